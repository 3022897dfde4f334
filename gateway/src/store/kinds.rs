//! The text-coded enums of the data model. Each is stored as its lowercase token (the same token
//! in JSON, in `Display`, and in the migration's CHECK constraint), so the database, the API and
//! the logs agree on one spelling.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A stored token that names no variant of the enum it should decode to.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}")]
pub struct UnknownKind {
    /// The enum, e.g. `"school kind"`.
    pub kind: &'static str,
    /// The token that did not match.
    pub value: String,
}

/// Defines an enum whose variants are stored as fixed text tokens.
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        $name:ident ($label:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $token:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $token)] $variant, )+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &[$name] = &[$($name::$variant),+];

            /// The stored token.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $token,)+
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownKind;

            fn from_str(text: &str) -> Result<Self, UnknownKind> {
                match text {
                    $($token => Ok($name::$variant),)+
                    _ => Err(UnknownKind { kind: $label, value: text.to_owned() }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum! {
    /// What kind of school a school is.
    SchoolKind ("school kind") {
        /// 城区学校: an urban school, usually the lead side.
        Urban = "urban",
        /// 乡村学校: a rural school.
        Rural = "rural",
        /// 教学点: a teaching point, a very small rural site.
        TeachingPoint = "teaching_point",
    }
}

text_enum! {
    /// What a classroom is equipped for.
    ClassroomKind ("classroom kind") {
        /// 主讲课堂: can lead a class (and can also receive).
        Lead = "lead",
        /// 接收课堂: receives a class.
        Receiving = "receiving",
        /// 录播教室: a recording classroom.
        Recording = "recording",
    }
}

text_enum! {
    /// A user's role; with the user's district/school/classroom it gives the scope of what they may
    /// do (decided by `policy`, not here).
    Role ("role") {
        /// 区县教育局管理员.
        DistrictAdmin = "district_admin",
        /// 学校管理员 (often the school's CIO).
        SchoolAdmin = "school_admin",
        /// 教师: lead or assistant teacher.
        Teacher = "teacher",
        /// A classroom's own account (the room's PC or box).
        Classroom = "classroom",
        /// 评课人: 教研员, 教研组长, a training-team member.
        Reviewer = "reviewer",
    }
}

text_enum! {
    /// How far apart a pairing's schools are.
    PairingScope ("pairing scope") {
        /// Within one county.
        County = "county",
        /// Within one prefecture.
        Prefecture = "prefecture",
        /// Across provinces.
        Province = "province",
    }
}

text_enum! {
    /// A special day in a term.
    TermDayKind ("term day kind") {
        /// No lessons.
        Holiday = "holiday",
        /// 调休: a make-up day that runs the timetable of another weekday.
        Makeup = "makeup",
    }
}

text_enum! {
    /// A change to one occurrence of a series.
    ExceptionKind ("exception kind") {
        /// The occurrence on that date does not happen.
        Cancel = "cancel",
        /// The occurrence moves to another date and period.
        Move = "move",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_through_text_and_json() {
        for kind in Role::ALL {
            assert_eq!(kind.as_str().parse::<Role>(), Ok(*kind));
            let json = serde_json::to_string(kind).expect("a token serialises");
            assert_eq!(json, format!("\"{kind}\""));
        }
        for kind in SchoolKind::ALL {
            assert_eq!(kind.as_str().parse::<SchoolKind>(), Ok(*kind));
        }
        assert!("Urban".parse::<SchoolKind>().is_err());
    }
}
