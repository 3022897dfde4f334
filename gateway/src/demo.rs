//! The demo class `duet up` creates: one lead classroom, two receiving classrooms and an
//! observer, each with a random password printed at start-up.

use duet_sfu_proto::{ParticipantId, Role, RoomId};
use rand::Rng;

/// One demo login.
#[derive(Clone, Debug)]
pub struct DemoAccount {
    /// Login name.
    pub username: String,
    /// Password (random per start).
    pub password: String,
    /// Display name in the class.
    pub display_name: String,
    /// Role in the class.
    pub role: Role,
}

/// The demo class.
#[derive(Clone, Debug)]
pub struct DemoClass {
    /// Room id on the SFU.
    pub room: RoomId,
    /// Title shown on the join page.
    pub title: String,
    /// Its accounts.
    pub accounts: Vec<DemoAccount>,
}

fn password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut rng = rand::rng();
    (0..8)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

impl DemoClass {
    /// The demo class with fresh passwords.
    pub fn new() -> Self {
        let acct = |u: &str, n: &str, role| DemoAccount {
            username: u.into(),
            password: password(),
            display_name: n.into(),
            role,
        };
        Self {
            room: RoomId("demo-class".into()),
            title: "三年级数学 · 同步课堂 (演示)".into(),
            accounts: vec![
                acct("teacher", "王老师 · 城关小学主讲课堂", Role::Lead),
                acct("room-a", "李家村小学 三年级", Role::Receiving),
                acct("room-b", "东山教学点 三年级", Role::Receiving),
                acct("observer", "教研员 张老师", Role::Observer),
            ],
        }
    }

    /// The account with this username and password.
    pub fn login(&self, username: &str, password: &str) -> Option<&DemoAccount> {
        self.accounts.iter().find(|a| {
            a.username == username && constant_time_eq(a.password.as_bytes(), password.as_bytes())
        })
    }

    /// A participant id for an account.
    pub fn participant(a: &DemoAccount) -> ParticipantId {
        ParticipantId(a.username.clone())
    }
}

impl Default for DemoClass {
    fn default() -> Self {
        Self::new()
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
