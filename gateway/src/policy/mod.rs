//! Authorization: the **one place** that decides whether a principal may do an action on a
//! resource. Handlers describe the resource they touch (with its school and district, loaded
//! from the store) and call [`authorize`]; no handler decides access by itself.
//!
//! Scopes, as the issue fixes them:
//! - a district admin (区县教育局) sees and changes everything in their district, nothing outside;
//! - a school admin sees and changes their school (classrooms, devices, bells, its accounts) and
//!   reads the district's terms, subjects and the pairings and classes their school is part of;
//! - a teacher reads their school and their own classes, and joins them;
//! - a classroom login reads and joins the classes of its classroom;
//! - a reviewer sees only what is shared with them (nothing in the timetable, no recordings);
//! - a machine token (recorder agent, integration) reads timetables and calendars of its school
//!   or district and reports attendance;
//! - a recording classroom's recorder and archive ([`Resource::Recording`]): its machine token
//!   reports the recorder's state and registers lessons (create) and reads them; the school's
//!   admin and teachers watch (read) and control it — start, stop, extend, director events
//!   (update); the district admin does everything.
//! - a recorded lesson in the archive ([`Resource::Lesson`], 课堂实录): the district admin reads
//!   every lesson of the district; school admins and teachers read their school's lessons and
//!   the live lessons whose pairing includes their school; any account reads the lessons it is
//!   assigned to review; machine tokens read as for [`Resource::Recording`]; classroom logins
//!   read none. An unpublished lesson is read only by its school's admin and the district admin.
//!   Update (assign reviewers, publish, unpublish) and delete: the lesson's school admin and the
//!   district admin. Create (export a clip): the lesson's teacher, its school admin, the district
//!   admin — each only while they may read it.
//!
//! Pure: no I/O, no clock. Tested by a matrix of every role against every resource kind and action.

use serde::{Deserialize, Serialize};
use std::fmt;

/// An account's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountRole {
    /// 区县教育局: runs a district.
    DistrictAdmin,
    /// A school's administrator (CIO).
    SchoolAdmin,
    /// A teacher.
    Teacher,
    /// The login of a classroom PC or terminal.
    Classroom,
    /// A reviewer (教研员, 教研组长).
    Reviewer,
    /// A machine API token (recorder agent, integration).
    Machine,
}

impl AccountRole {
    /// Stable lower-case token.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountRole::DistrictAdmin => "district_admin",
            AccountRole::SchoolAdmin => "school_admin",
            AccountRole::Teacher => "teacher",
            AccountRole::Classroom => "classroom",
            AccountRole::Reviewer => "reviewer",
            AccountRole::Machine => "machine",
        }
    }

    /// Parses the stable token.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "district_admin" => AccountRole::DistrictAdmin,
            "school_admin" => AccountRole::SchoolAdmin,
            "teacher" => AccountRole::Teacher,
            "classroom" => AccountRole::Classroom,
            "reviewer" => AccountRole::Reviewer,
            "machine" => AccountRole::Machine,
            _ => return None,
        })
    }

    /// Every role, for matrices.
    pub const ALL: [AccountRole; 6] = [
        AccountRole::DistrictAdmin,
        AccountRole::SchoolAdmin,
        AccountRole::Teacher,
        AccountRole::Classroom,
        AccountRole::Reviewer,
        AccountRole::Machine,
    ];
}

impl fmt::Display for AccountRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who is asking, with the scope their account carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The account (or token) id.
    pub id: String,
    /// Its role.
    pub role: AccountRole,
    /// Its district (every account but a machine token scoped to one school has one).
    pub district: Option<String>,
    /// Its school, for school-level accounts.
    pub school: Option<String>,
    /// Its classroom, for classroom logins.
    pub classroom: Option<String>,
}

/// What the principal wants to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// See it.
    Read,
    /// Make one.
    Create,
    /// Change it.
    Update,
    /// Remove it.
    Delete,
    /// Join the live class (sessions only).
    Join,
}

impl Action {
    /// Every action, for matrices.
    pub const ALL: [Action; 5] = [
        Action::Read,
        Action::Create,
        Action::Update,
        Action::Delete,
        Action::Join,
    ];
}

/// What it is done to, described with the scope it lives in.
#[derive(Clone, Debug)]
pub enum Resource<'a> {
    /// A district itself.
    District {
        /// Its id.
        id: &'a str,
    },
    /// A school (also its bell schedule).
    School {
        /// Its id.
        id: &'a str,
        /// Its district.
        district: &'a str,
    },
    /// A classroom and its devices.
    Classroom {
        /// Its id.
        id: &'a str,
        /// Its school.
        school: &'a str,
        /// Its district.
        district: &'a str,
    },
    /// An account managed by admins.
    Account {
        /// The account's role.
        role: AccountRole,
        /// Its school, if school-level.
        school: Option<&'a str>,
        /// Its district.
        district: &'a str,
    },
    /// District-wide reference data: terms, holidays, subjects.
    DistrictData {
        /// The district.
        district: &'a str,
    },
    /// A pairing of a lead school with receiving schools.
    Pairing {
        /// Its district.
        district: &'a str,
        /// The lead school.
        lead_school: &'a str,
        /// The receiving schools.
        receiving_schools: &'a [String],
    },
    /// A timetabled class (a series, or one occurrence of it).
    Class {
        /// Its district.
        district: &'a str,
        /// Every school taking part (lead first).
        schools: &'a [String],
        /// Every classroom taking part (lead first).
        classrooms: &'a [String],
        /// The lead classroom.
        lead_classroom: &'a str,
        /// The teacher.
        teacher: &'a str,
    },
    /// The audit log of a district (or of one school in it).
    AuditLog {
        /// The district.
        district: &'a str,
        /// Restricted to one school's entries, if set.
        school: Option<&'a str>,
    },
    /// Attendance reports (written by the SFU's machine token).
    Attendance {
        /// The district.
        district: &'a str,
    },
    /// A recording classroom's (录播教室) recorder — its reported state, previews, manual control —
    /// and its recorded lessons (课堂实录). Read: see; Create: report state, register lessons;
    /// Update: control the recorder.
    Recording {
        /// The recording classroom.
        classroom: &'a str,
        /// Its school.
        school: &'a str,
        /// Its district.
        district: &'a str,
    },
    /// A recorded lesson in the archive (课堂实录). Read: see it, its media, reviews; Create:
    /// export a clip; Update: assign reviewers, publish or unpublish; Delete: delete it.
    Lesson {
        /// The school that recorded it.
        school: &'a str,
        /// Its district.
        district: &'a str,
        /// For a live lesson: every school of its pairing (lead and partners); empty otherwise.
        pairing_schools: &'a [String],
        /// The accounts assigned to review it.
        reviewers: &'a [String],
        /// The accounts of its teacher (by name in its school, or the series' teacher).
        teachers: &'a [String],
        /// Whether it is published.
        published: bool,
    },
}

/// Access refused; the message is safe to show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("你没有权限执行此操作 / you are not allowed to do this")]
pub struct Denied;

/// How a principal joins a class it may join.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinAs {
    /// The lead teacher or the lead classroom.
    Lead,
    /// A receiving classroom.
    Receiving,
    /// An administrator watching.
    Observer,
}

fn same(a: Option<&String>, b: &str) -> bool {
    a.is_some_and(|a| a == b)
}

/// Decides `action` on `resource` for `p`.
pub fn authorize(p: &Principal, action: Action, resource: &Resource<'_>) -> Result<(), Denied> {
    if allowed(p, action, resource) {
        Ok(())
    } else {
        Err(Denied)
    }
}

fn allowed(p: &Principal, action: Action, r: &Resource<'_>) -> bool {
    use AccountRole as R;
    use Action as A;
    let in_district = |d: &str| same(p.district.as_ref(), d);
    let my_school = |s: &str| same(p.school.as_ref(), s);
    if let Resource::Lesson { .. } = r {
        return lesson_allowed(p, action, r);
    }
    match (p.role, r) {
        // District admins: everything in their district except joining as a participant is
        // decided by `join_role`; they may not create or delete districts.
        (R::DistrictAdmin, Resource::District { id }) => {
            in_district(id) && matches!(action, A::Read | A::Update)
        }
        (R::DistrictAdmin, Resource::Class { district, .. }) => in_district(district),
        (R::DistrictAdmin, Resource::Attendance { district }) => {
            in_district(district) && action == A::Read
        }
        (R::DistrictAdmin, r) => action != A::Join && in_district(district_of(r)),

        (R::SchoolAdmin, Resource::District { id }) => in_district(id) && action == A::Read,
        (R::SchoolAdmin, Resource::School { id, .. }) => {
            my_school(id) && matches!(action, A::Read | A::Update)
        }
        (R::SchoolAdmin, Resource::Classroom { school, .. }) => {
            my_school(school) && action != A::Join
        }
        (R::SchoolAdmin, Resource::Account { role, school, .. }) => {
            school.is_some_and(my_school)
                && matches!(role, R::Teacher | R::Classroom | R::Reviewer)
                && action != A::Join
        }
        (R::SchoolAdmin, Resource::DistrictData { district }) => {
            in_district(district) && action == A::Read
        }
        (
            R::SchoolAdmin,
            Resource::Pairing {
                lead_school,
                receiving_schools,
                ..
            },
        ) => {
            action == A::Read
                && (my_school(lead_school) || receiving_schools.iter().any(|s| my_school(s)))
        }
        (R::SchoolAdmin, Resource::Class { schools, .. }) => {
            matches!(action, A::Read | A::Join) && schools.iter().any(|s| my_school(s))
        }
        (R::SchoolAdmin, Resource::AuditLog { district, school }) => {
            action == A::Read && in_district(district) && school.is_some_and(my_school)
        }
        (R::SchoolAdmin, Resource::Attendance { .. }) => false,
        (R::SchoolAdmin | R::Teacher, Resource::Recording { school, .. }) => {
            my_school(school) && matches!(action, A::Read | A::Update)
        }

        (R::Teacher, Resource::District { id }) => in_district(id) && action == A::Read,
        (R::Teacher, Resource::School { id, .. }) => my_school(id) && action == A::Read,
        (R::Teacher, Resource::Classroom { school, .. }) => my_school(school) && action == A::Read,
        (R::Teacher, Resource::DistrictData { district }) => {
            in_district(district) && action == A::Read
        }
        (R::Teacher, Resource::Class { teacher, .. }) => {
            *teacher == p.id && matches!(action, A::Read | A::Join)
        }

        (R::Classroom, Resource::Classroom { id, .. }) => {
            same(p.classroom.as_ref(), id) && action == A::Read
        }
        (R::Classroom, Resource::School { id, .. }) => my_school(id) && action == A::Read,
        (R::Classroom, Resource::Class { classrooms, .. }) => {
            matches!(action, A::Read | A::Join)
                && classrooms.iter().any(|c| same(p.classroom.as_ref(), c))
        }

        (
            R::Machine,
            Resource::Class {
                district, schools, ..
            },
        ) => {
            action == A::Read
                && (p.school.is_none() && in_district(district)
                    || schools.iter().any(|s| my_school(s)))
        }
        (
            R::Machine,
            Resource::Classroom {
                school, district, ..
            },
        ) => {
            action == A::Read && (my_school(school) || p.school.is_none() && in_district(district))
        }
        // A recorder finds its classrooms through their school.
        (R::Machine, Resource::School { id, district }) => {
            action == A::Read && (my_school(id) || p.school.is_none() && in_district(district))
        }
        (R::Machine, Resource::Attendance { district }) => {
            in_district(district) && matches!(action, A::Create | A::Read)
        }
        (
            R::Machine,
            Resource::Recording {
                school, district, ..
            },
        ) => {
            matches!(action, A::Create | A::Read)
                && (my_school(school) || p.school.is_none() && in_district(district))
        }

        _ => false,
    }
}

fn district_of<'a>(r: &Resource<'a>) -> &'a str {
    match r {
        Resource::District { id } => id,
        Resource::School { district, .. }
        | Resource::Classroom { district, .. }
        | Resource::Account { district, .. }
        | Resource::DistrictData { district }
        | Resource::Pairing { district, .. }
        | Resource::Class { district, .. }
        | Resource::AuditLog { district, .. }
        | Resource::Attendance { district }
        | Resource::Recording { district, .. }
        | Resource::Lesson { district, .. } => district,
    }
}

/// [`Resource::Lesson`]: see the module doc.
fn lesson_allowed(p: &Principal, action: Action, r: &Resource<'_>) -> bool {
    use AccountRole as R;
    use Action as A;
    let Resource::Lesson {
        school,
        district,
        pairing_schools,
        reviewers,
        teachers,
        published,
    } = *r
    else {
        return false;
    };
    let in_district = same(p.district.as_ref(), district);
    let my_school = same(p.school.as_ref(), school);
    // Those who manage the lesson: its school's admin and the district admin.
    let manager = in_district
        && match p.role {
            R::DistrictAdmin => true,
            R::SchoolAdmin => my_school,
            _ => false,
        };
    let assigned = in_district && reviewers.contains(&p.id);
    let paired = pairing_schools.iter().any(|s| same(p.school.as_ref(), s));
    let reads = manager
        || published
            && match p.role {
                R::DistrictAdmin | R::Classroom => false,
                R::SchoolAdmin | R::Teacher => in_district && my_school || paired || assigned,
                R::Reviewer => assigned,
                R::Machine => my_school || p.school.is_none() && in_district,
            };
    match action {
        A::Read => reads,
        A::Update | A::Delete => manager,
        A::Create => {
            reads && (manager || p.role == R::Teacher && in_district && teachers.contains(&p.id))
        }
        A::Join => false,
    }
}

/// The role a principal takes in a class it may join, or `Denied`. A receiving classroom can
/// never obtain the lead role: the lead is only the lead classroom's login and the teacher.
pub fn join_role(p: &Principal, class: &Resource<'_>) -> Result<JoinAs, Denied> {
    authorize(p, Action::Join, class)?;
    let Resource::Class {
        lead_classroom,
        teacher,
        ..
    } = class
    else {
        return Err(Denied);
    };
    Ok(match p.role {
        AccountRole::Teacher if *teacher == p.id => JoinAs::Lead,
        AccountRole::Classroom if same(p.classroom.as_ref(), lead_classroom) => JoinAs::Lead,
        AccountRole::Classroom => JoinAs::Receiving,
        AccountRole::DistrictAdmin | AccountRole::SchoolAdmin => JoinAs::Observer,
        _ => return Err(Denied),
    })
}

#[cfg(test)]
mod tests;
