//! Who may do what: operators' roles, the venues a venue role is limited to, and the actor a
//! request acts as (recorded in the audit trail).
//!
//! Three roles, as a platform's staff divide the work:
//! - `admin`: everything, users included;
//! - `integrator`: partners, events, replay, health, webhooks and the platform link, venues
//!   and their partner locations; reads every venue's diary (to see what a replay did) but
//!   changes no booking or sale by hand;
//! - `venue_manager`: the diary, inbox, bookings, guests, events and settings of their own
//!   venues only. Another venue's data is answered as if it did not exist (404), so a
//!   manager cannot even learn which ids exist elsewhere.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// An operator's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Integrator,
    VenueManager,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Admin, Role::Integrator, Role::VenueManager];

    /// The role's name as stored and as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Integrator => "integrator",
            Role::VenueManager => "venue_manager",
        }
    }

    /// Whether the role is limited to the venues its user is given.
    pub fn is_venue_scoped(self) -> bool {
        self == Role::VenueManager
    }

    /// Whether the role carries `permission` (on the venues it sees).
    pub fn may(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Admin => true,
            Role::Integrator => matches!(
                permission,
                ReadVenueData | VenueSettings | ManageVenues | Integrate
            ),
            Role::VenueManager => matches!(permission, ReadVenueData | WriteDiary | VenueSettings),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of ours.
#[derive(Debug, thiserror::Error)]
#[error("role {0:?} is not one of admin, integrator, venue_manager")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(text: &str) -> Result<Role, UnknownRole> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == text)
            .ok_or_else(|| UnknownRole(text.to_owned()))
    }
}

/// What a request wants to do, beyond reading what it may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Read a venue's diary, bookings, guests, sales and events.
    ReadVenueData,
    /// Match and unmatch sales, create, change and cancel bookings by hand.
    WriteDiary,
    /// Change a venue's own settings (name, time zone, currency, tolerances, tables).
    VenueSettings,
    /// Create venues and map partner locations to them.
    ManageVenues,
    /// Partners, replay, health, webhooks, the change feed and the platform link.
    Integrate,
    /// Users, tokens of others, retention purges.
    Administer,
}

/// The venues an actor sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Everywhere,
    Venues(BTreeSet<i64>),
}

/// Who a request acts as: a user (by session or personal token) or the configuration's
/// bootstrap admin token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The user's id; `None` for the bootstrap admin token and for the service itself.
    pub user_id: Option<i64>,
    /// How the audit trail names the actor: the user's e-mail, or `admin token`.
    pub name: String,
    pub role: Role,
    pub scope: Scope,
    /// How the actor signed in: `session`, `token <id>`, `admin token`, `command line`
    /// (the audit trail keeps it, so an admin acting with a token they made for someone else
    /// is told apart).
    pub via: String,
}

impl Actor {
    /// The configuration's `admin_token`: an admin, everywhere.
    pub fn bootstrap_admin() -> Actor {
        Actor {
            user_id: None,
            name: "admin token".to_owned(),
            role: Role::Admin,
            scope: Scope::Everywhere,
            via: "admin token".to_owned(),
        }
    }

    /// A command run on the server (`diarysync user ...`), an admin.
    pub fn command_line() -> Actor {
        Actor {
            user_id: None,
            name: "command line".to_owned(),
            role: Role::Admin,
            scope: Scope::Everywhere,
            via: "command line".to_owned(),
        }
    }

    /// A user, scoped to `venues` when the role is a venue role.
    pub fn user(id: i64, email: &str, role: Role, venues: impl IntoIterator<Item = i64>) -> Actor {
        let scope = if role.is_venue_scoped() {
            Scope::Venues(venues.into_iter().collect())
        } else {
            Scope::Everywhere
        };
        Actor {
            user_id: Some(id),
            name: email.to_owned(),
            role,
            scope,
            via: "session".to_owned(),
        }
    }

    /// The same actor, signed in another way.
    #[must_use]
    pub fn via(mut self, via: impl Into<String>) -> Actor {
        self.via = via.into();
        self
    }

    /// Whether the actor may do `permission` at all (on some venue).
    pub fn may(&self, permission: Permission) -> bool {
        self.role.may(permission)
    }

    /// Whether the actor sees venue `venue_id`'s data.
    pub fn sees(&self, venue_id: i64) -> bool {
        match &self.scope {
            Scope::Everywhere => true,
            Scope::Venues(venues) => venues.contains(&venue_id),
        }
    }

    /// The venues a list must be limited to; `None` when the actor sees every venue.
    pub fn venue_limit(&self) -> Option<Vec<i64>> {
        match &self.scope {
            Scope::Everywhere => None,
            Scope::Venues(venues) => Some(venues.iter().copied().collect()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_venue_manager_sees_only_their_venues_and_changes_no_partner() {
        let manager = Actor::user(7, "m@example.com", Role::VenueManager, [1, 3]);
        assert!(manager.sees(1) && manager.sees(3) && !manager.sees(2));
        assert_eq!(manager.venue_limit(), Some(vec![1, 3]));
        assert!(manager.may(Permission::WriteDiary));
        assert!(!manager.may(Permission::Integrate));
        assert!(!manager.may(Permission::ManageVenues));
        assert!(!manager.may(Permission::Administer));
    }

    #[test]
    fn an_integrator_sees_every_venue_but_changes_no_diary_by_hand() {
        let integrator = Actor::user(8, "i@example.com", Role::Integrator, [1]);
        assert!(
            integrator.sees(2),
            "venues given to an integrator do not limit them"
        );
        assert_eq!(integrator.venue_limit(), None);
        assert!(integrator.may(Permission::Integrate));
        assert!(!integrator.may(Permission::WriteDiary));
        assert!(!integrator.may(Permission::Administer));
    }

    #[test]
    fn roles_read_back_as_written() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().ok(), Some(role));
        }
        assert!("root".parse::<Role>().is_err());
        assert!(Actor::bootstrap_admin().may(Permission::Administer));
    }
}
