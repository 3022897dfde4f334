//! The authorization matrix: every role against every resource kind and action, inside and
//! outside its scope (another school of the same district, another district). Each row lists the
//! allowed actions as letters: R read, C create, U update, D delete, J join; `-` none.

use super::*;

fn principal(
    id: &str,
    role: AccountRole,
    district: Option<&str>,
    school: Option<&str>,
    classroom: Option<&str>,
) -> Principal {
    Principal {
        id: id.into(),
        role,
        district: district.map(Into::into),
        school: school.map(Into::into),
        classroom: classroom.map(Into::into),
    }
}

fn letters(p: &Principal, r: &Resource<'_>) -> String {
    let s: String = [
        (Action::Read, 'R'),
        (Action::Create, 'C'),
        (Action::Update, 'U'),
        (Action::Delete, 'D'),
        (Action::Join, 'J'),
    ]
    .iter()
    .filter(|(a, _)| authorize(p, *a, r).is_ok())
    .map(|(_, c)| *c)
    .collect();
    if s.is_empty() { "-".into() } else { s }
}

#[test]
fn authorization_matrix() {
    // District d1: urban school s1 (classroom c1, teacher t1) paired with rural school s2
    // (classroom c2). District d2: school s3 (classroom c3, teacher t3).
    let k1_schools = vec!["s1".to_string(), "s2".to_string()];
    let k1_rooms = vec!["c1".to_string(), "c2".to_string()];
    let k3_schools = vec!["s3".to_string()];
    let k3_rooms = vec!["c3".to_string()];
    let receiving = vec!["s2".to_string()];
    let resources: Vec<(&str, Resource<'_>)> = vec![
        ("district d1", Resource::District { id: "d1" }),
        ("district d2", Resource::District { id: "d2" }),
        (
            "school s1",
            Resource::School {
                id: "s1",
                district: "d1",
            },
        ),
        (
            "school s2",
            Resource::School {
                id: "s2",
                district: "d1",
            },
        ),
        (
            "school s3",
            Resource::School {
                id: "s3",
                district: "d2",
            },
        ),
        (
            "classroom c2",
            Resource::Classroom {
                id: "c2",
                school: "s2",
                district: "d1",
            },
        ),
        (
            "classroom c3",
            Resource::Classroom {
                id: "c3",
                school: "s3",
                district: "d2",
            },
        ),
        (
            "teacher acct s2",
            Resource::Account {
                role: AccountRole::Teacher,
                school: Some("s2"),
                district: "d1",
            },
        ),
        (
            "admin acct s2",
            Resource::Account {
                role: AccountRole::SchoolAdmin,
                school: Some("s2"),
                district: "d1",
            },
        ),
        (
            "teacher acct s3",
            Resource::Account {
                role: AccountRole::Teacher,
                school: Some("s3"),
                district: "d2",
            },
        ),
        ("terms d1", Resource::DistrictData { district: "d1" }),
        ("terms d2", Resource::DistrictData { district: "d2" }),
        (
            "pairing s1>s2",
            Resource::Pairing {
                district: "d1",
                lead_school: "s1",
                receiving_schools: &receiving,
            },
        ),
        (
            "class k1",
            Resource::Class {
                district: "d1",
                schools: &k1_schools,
                classrooms: &k1_rooms,
                lead_classroom: "c1",
                teacher: "t1",
            },
        ),
        (
            "class k3",
            Resource::Class {
                district: "d2",
                schools: &k3_schools,
                classrooms: &k3_rooms,
                lead_classroom: "c3",
                teacher: "t3",
            },
        ),
        (
            "audit d1/s2",
            Resource::AuditLog {
                district: "d1",
                school: Some("s2"),
            },
        ),
        (
            "audit d1",
            Resource::AuditLog {
                district: "d1",
                school: None,
            },
        ),
        ("attendance d1", Resource::Attendance { district: "d1" }),
        ("attendance d2", Resource::Attendance { district: "d2" }),
        (
            "recording r1 (s1)",
            Resource::Recording {
                classroom: "r1",
                school: "s1",
                district: "d1",
            },
        ),
        (
            "recording r2 (s2)",
            Resource::Recording {
                classroom: "r2",
                school: "s2",
                district: "d1",
            },
        ),
        (
            "recording r3 (s3)",
            Resource::Recording {
                classroom: "r3",
                school: "s3",
                district: "d2",
            },
        ),
    ];
    let principals = [
        (
            "district admin d1",
            principal("da1", AccountRole::DistrictAdmin, Some("d1"), None, None),
        ),
        (
            "school admin s2",
            principal(
                "sa2",
                AccountRole::SchoolAdmin,
                Some("d1"),
                Some("s2"),
                None,
            ),
        ),
        (
            "teacher t1 (s1)",
            principal("t1", AccountRole::Teacher, Some("d1"), Some("s1"), None),
        ),
        (
            "teacher t9 (s1)",
            principal("t9", AccountRole::Teacher, Some("d1"), Some("s1"), None),
        ),
        (
            "classroom c2",
            principal(
                "u-c2",
                AccountRole::Classroom,
                Some("d1"),
                Some("s2"),
                Some("c2"),
            ),
        ),
        (
            "reviewer d1",
            principal("rv", AccountRole::Reviewer, Some("d1"), None, None),
        ),
        (
            "machine s1",
            principal("m1", AccountRole::Machine, Some("d1"), Some("s1"), None),
        ),
        (
            "machine d1",
            principal("md", AccountRole::Machine, Some("d1"), None, None),
        ),
    ];
    // One column per resource above, in order.
    let expected: [(&str, [&str; 22]); 8] = [
        (
            "district admin d1",
            [
                "RU", "-", "RCUD", "RCUD", "-", "RCUD", "-", "RCUD", "RCUD", "-", "RCUD", "-",
                "RCUD", "RCUDJ", "-", "RCUD", "RCUD", "R", "-", "RCUD", "RCUD", "-",
            ],
        ),
        (
            "school admin s2",
            [
                "R", "-", "-", "RU", "-", "RCUD", "-", "RCUD", "-", "-", "R", "-", "R", "RJ", "-",
                "R", "-", "-", "-", "-", "RU", "-",
            ],
        ),
        (
            "teacher t1 (s1)",
            [
                "R", "-", "R", "-", "-", "-", "-", "-", "-", "-", "R", "-", "-", "RJ", "-", "-",
                "-", "-", "-", "RU", "-", "-",
            ],
        ),
        (
            "teacher t9 (s1)",
            [
                "R", "-", "R", "-", "-", "-", "-", "-", "-", "-", "R", "-", "-", "-", "-", "-",
                "-", "-", "-", "RU", "-", "-",
            ],
        ),
        (
            "classroom c2",
            [
                "-", "-", "-", "R", "-", "R", "-", "-", "-", "-", "-", "-", "-", "RJ", "-", "-",
                "-", "-", "-", "-", "-", "-",
            ],
        ),
        (
            "reviewer d1",
            [
                "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-",
                "-", "-", "-", "-", "-", "-",
            ],
        ),
        (
            "machine s1",
            [
                "-", "-", "R", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "R", "-", "-",
                "-", "RC", "-", "RC", "-", "-",
            ],
        ),
        (
            "machine d1",
            [
                "-", "-", "R", "R", "-", "R", "-", "-", "-", "-", "-", "-", "-", "R", "-", "-",
                "-", "RC", "-", "RC", "RC", "-",
            ],
        ),
    ];
    let mut mismatches = Vec::new();
    for ((pname, p), (ename, row)) in principals.iter().zip(expected.iter()) {
        assert_eq!(pname, ename);
        for ((rname, r), want) in resources.iter().zip(row.iter()) {
            let got = letters(p, r);
            if got != *want {
                mismatches.push(format!("{pname} on {rname}: expected {want}, got {got}"));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "authorization matrix differs:\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn join_roles_never_let_a_receiving_classroom_lead() {
    let schools = vec!["s1".to_string(), "s2".to_string()];
    let rooms = vec!["c1".to_string(), "c2".to_string()];
    let class = Resource::Class {
        district: "d1",
        schools: &schools,
        classrooms: &rooms,
        lead_classroom: "c1",
        teacher: "t1",
    };
    let teacher = principal("t1", AccountRole::Teacher, Some("d1"), Some("s1"), None);
    let lead_room = principal(
        "u-c1",
        AccountRole::Classroom,
        Some("d1"),
        Some("s1"),
        Some("c1"),
    );
    let rural = principal(
        "u-c2",
        AccountRole::Classroom,
        Some("d1"),
        Some("s2"),
        Some("c2"),
    );
    let admin = principal("da", AccountRole::DistrictAdmin, Some("d1"), None, None);
    let outsider = principal(
        "u-c3",
        AccountRole::Classroom,
        Some("d2"),
        Some("s3"),
        Some("c3"),
    );
    let reviewer = principal("rv", AccountRole::Reviewer, Some("d1"), None, None);
    assert_eq!(join_role(&teacher, &class), Ok(JoinAs::Lead));
    assert_eq!(join_role(&lead_room, &class), Ok(JoinAs::Lead));
    assert_eq!(join_role(&rural, &class), Ok(JoinAs::Receiving));
    assert_eq!(join_role(&admin, &class), Ok(JoinAs::Observer));
    assert_eq!(join_role(&outsider, &class), Err(Denied));
    assert_eq!(join_role(&reviewer, &class), Err(Denied));
}

#[test]
fn role_tokens_round_trip() {
    for r in AccountRole::ALL {
        assert_eq!(AccountRole::parse(r.as_str()), Some(r));
    }
    assert_eq!(AccountRole::parse("root"), None);
}

#[test]
fn lesson_matrix() {
    // Lessons of school s1 (district d1): a room lesson assigned to reviewer rv and teacher t2
    // (of s2), taught by t1; the same hidden; a live lesson of the pairing s1 > s2; the same
    // hidden; a room lesson of s3 (district d2).
    let none: Vec<String> = Vec::new();
    let assigned = vec!["rv".to_string(), "t2".to_string()];
    let t1 = vec!["t1".to_string()];
    let pairing = vec!["s1".to_string(), "s2".to_string()];
    let lesson = |school, district, pairing_schools, reviewers, published| Resource::Lesson {
        school,
        district,
        pairing_schools,
        reviewers,
        teachers: &t1,
        published,
    };
    let resources = [
        ("room s1", lesson("s1", "d1", &none, &assigned, true)),
        (
            "room s1 hidden",
            lesson("s1", "d1", &none, &assigned, false),
        ),
        ("live s1>s2", lesson("s1", "d1", &pairing, &none, true)),
        (
            "live s1>s2 hidden",
            lesson("s1", "d1", &pairing, &none, false),
        ),
        ("room s3", lesson("s3", "d2", &none, &none, true)),
    ];
    let p = principal;
    let rows: [(Principal, [&str; 5]); 11] = [
        (
            p("da1", AccountRole::DistrictAdmin, Some("d1"), None, None),
            ["RCUD", "RCUD", "RCUD", "RCUD", "-"],
        ),
        (
            p(
                "sa1",
                AccountRole::SchoolAdmin,
                Some("d1"),
                Some("s1"),
                None,
            ),
            ["RCUD", "RCUD", "RCUD", "RCUD", "-"],
        ),
        (
            p(
                "sa2",
                AccountRole::SchoolAdmin,
                Some("d1"),
                Some("s2"),
                None,
            ),
            ["-", "-", "R", "-", "-"],
        ),
        (
            p("t1", AccountRole::Teacher, Some("d1"), Some("s1"), None),
            ["RC", "-", "RC", "-", "-"],
        ),
        (
            p("t9", AccountRole::Teacher, Some("d1"), Some("s1"), None),
            ["R", "-", "R", "-", "-"],
        ),
        (
            p("t2", AccountRole::Teacher, Some("d1"), Some("s2"), None),
            ["R", "-", "R", "-", "-"],
        ),
        (
            p("t3", AccountRole::Teacher, Some("d2"), Some("s3"), None),
            ["-", "-", "-", "-", "R"],
        ),
        (
            p("rv", AccountRole::Reviewer, Some("d1"), None, None),
            ["R", "-", "-", "-", "-"],
        ),
        (
            p(
                "u-c1",
                AccountRole::Classroom,
                Some("d1"),
                Some("s1"),
                Some("c1"),
            ),
            ["-", "-", "-", "-", "-"],
        ),
        (
            p("m1", AccountRole::Machine, Some("d1"), Some("s1"), None),
            ["R", "-", "R", "-", "-"],
        ),
        (
            p("md2", AccountRole::Machine, Some("d2"), None, None),
            ["-", "-", "-", "-", "R"],
        ),
    ];
    let mut mismatches = Vec::new();
    for (who, expected) in &rows {
        for ((name, r), want) in resources.iter().zip(expected.iter()) {
            let got = letters(who, r);
            if got != *want {
                mismatches.push(format!("{} on {name}: expected {want}, got {got}", who.id));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "lesson matrix differs:\n{}",
        mismatches.join("\n")
    );
}
