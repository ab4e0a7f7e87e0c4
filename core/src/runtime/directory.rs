//! The people and agencies the core may look up: who holds a role (in which
//! unit), and what an agency's level and county are (XT-7 routing).
//!
//! The core sees the directory as data through the [`Directory`] trait; the
//! store implements it over its tables, tests over a vector.

use serde::{Deserialize, Serialize};

/// A person of the directory (staff or supervisor).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Person {
    /// Stable id, e.g. `zhang_san`.
    pub id: String,
    /// Name as written, e.g. `张三`.
    pub name: String,
    /// The roles the person holds (role ids of the definitions).
    #[serde(default)]
    pub roles: Vec<String>,
    /// The organisation the person belongs to.
    #[serde(default)]
    pub organisation: Option<String>,
    /// `市级` or `县级`.
    #[serde(default)]
    pub level: Option<String>,
    /// The county (县、市、区), or `市本级`.
    #[serde(default)]
    pub county: Option<String>,
    /// Email address.
    #[serde(default)]
    pub email: Option<String>,
    /// Mobile number.
    #[serde(default)]
    pub mobile: Option<String>,
}

/// An agency of the directory (a supervised body or a department).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agency {
    /// Stable id, e.g. `xt_market_bureau`.
    pub id: String,
    /// Name as written.
    pub name: String,
    /// `市级` or `县级`.
    #[serde(default)]
    pub level: Option<String>,
    /// The county (县、市、区), or `市本级`.
    #[serde(default)]
    pub county: Option<String>,
    /// Email address the notices go to.
    #[serde(default)]
    pub email: Option<String>,
    /// Mobile number for SMS.
    #[serde(default)]
    pub mobile: Option<String>,
}

/// What the core may ask of the directory.
pub trait Directory {
    /// A person by id.
    fn person(&self, id: &str) -> Option<Person>;
    /// An agency by id.
    fn agency(&self, id: &str) -> Option<Agency>;
    /// The people holding `role`, only within `unit` (a county or `市本级`) when given.
    fn holders(&self, role: &str, unit: Option<&str>) -> Vec<Person>;
    /// Every agency, or those of `level` (`市级`, `县级` …), in directory order.
    fn agencies(&self, level: Option<&str>) -> Vec<Agency>;
}

/// A directory held in memory: for tests and the simulator.
#[derive(Clone, Debug, Default)]
pub struct MemoryDirectory {
    /// The people.
    pub people: Vec<Person>,
    /// The agencies.
    pub agencies: Vec<Agency>,
}

impl Directory for MemoryDirectory {
    fn person(&self, id: &str) -> Option<Person> {
        self.people.iter().find(|p| p.id == id).cloned()
    }

    fn agency(&self, id: &str) -> Option<Agency> {
        self.agencies.iter().find(|a| a.id == id).cloned()
    }

    fn holders(&self, role: &str, unit: Option<&str>) -> Vec<Person> {
        self.people
            .iter()
            .filter(|p| p.roles.iter().any(|r| r == role))
            .filter(|p| unit.is_none_or(|u| p.county.as_deref() == Some(u)))
            .cloned()
            .collect()
    }

    fn agencies(&self, level: Option<&str>) -> Vec<Agency> {
        self.agencies
            .iter()
            .filter(|a| level.is_none_or(|l| a.level.as_deref() == Some(l)))
            .cloned()
            .collect()
    }
}
