//! The partners a node takes deliveries for: the configuration file's, fixed at start, and
//! the database's, swapped in whole whenever the registry's version changes (every node polls
//! it; the node that made a change reloads at once). A stored partner whose definition or
//! secrets did not change keeps its rate limiter's state.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Gateway;
use super::abuse::Limiter;
use super::abuse::limiter;
use crate::config::HandlerErrors;
use crate::partners::decode::BodyPolicy;
use crate::partners::keyring::{Key, Keyring};
use crate::partners::script::SavedScript;
use crate::partners::{HandlerSpec, PartnerHandler};
use crate::sealed::Sealer;
use crate::store::partner_registry::StoredPartner;

/// A partner, ready to authenticate and map deliveries.
pub(super) struct Partner {
    pub(super) spec: HandlerSpec,
    pub(super) handler: Arc<dyn PartnerHandler>,
    /// Its credentials: the file's one scheme, or a stored partner's secrets in their windows.
    pub(super) keys: Keyring,
    /// Where it is defined.
    pub(super) source: Source,
    /// `None`: not rate limited.
    pub(super) limiter: Option<Limiter>,
    /// How its bodies are decoded before the handler reads them.
    pub(super) body: BodyPolicy,
    pub(super) on_handler_error: HandlerErrors,
}

impl std::fmt::Debug for Partner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Partner")
            .field("spec", &self.spec)
            .field("auth", &self.keys.primary().name())
            .field("rate_limited", &self.limiter.is_some())
            .finish_non_exhaustive()
    }
}

/// Where a partner is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The configuration file (changed by editing it and restarting).
    File,
    /// The database, at this version of the partner.
    Database { version: i64 },
}

/// A partner as operators see it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, PartialEq, Eq)]
pub struct PartnerInfo {
    pub name: String,
    pub handler: &'static str,
    /// The authentication scheme, e.g. `hmac-sha256`.
    pub scheme: &'static str,
    /// `file` (the configuration file; read-only here) or `database`.
    pub managed_by: &'static str,
    /// Whether it takes deliveries now.
    pub enabled: bool,
    /// Its secrets, by label and window (never the secrets); empty for the file's.
    pub secrets: Vec<SecretInfo>,
    /// Why a stored partner takes no deliveries although enabled (a secret that does not
    /// open with this node's key, a definition no longer valid).
    pub problem: Option<String>,
    /// A stored partner's newest saved script: its number (1, 2, ...) and content hash
    /// (what its events record as `handler_version`); `null` when it has none.
    pub script: Option<ScriptRef>,
}

/// Which saved script version a stored partner runs.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, PartialEq, Eq)]
pub struct ScriptRef {
    pub number: i64,
    pub version: String,
}

/// One of a stored partner's secrets, without the secret.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, PartialEq, Eq)]
pub struct SecretInfo {
    pub id: i64,
    pub label: String,
    pub valid_from: Option<DateTime<Utc>>,
    pub valid_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// What sealed secrets are bound to: a secret sealed for one partner and label opens for
/// that one only.
pub fn seal_context(partner: &str, label: &str) -> String {
    format!("partner:{partner}/{label}")
}

impl Gateway {
    /// The current partners.
    pub(super) fn registry(&self) -> Arc<HashMap<String, Arc<Partner>>> {
        match self.partners.read() {
            Ok(partners) => Arc::clone(&partners),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    pub(super) fn partner(&self, name: &str) -> Option<Arc<Partner>> {
        self.registry().get(name).cloned()
    }

    /// Whether `name` is a partner of the database's that takes no deliveries now.
    pub(super) fn is_held(&self, name: &str) -> bool {
        match self.held.read() {
            Ok(held) => held.contains(name),
            Err(poisoned) => poisoned.into_inner().contains(name),
        }
    }

    /// Whether `name` is one of the configuration file's partners.
    pub fn is_file_partner(&self, name: &str) -> bool {
        self.partner(name).is_some_and(|p| p.source == Source::File)
    }

    /// Swaps in the database's partners (`stored`), opening their secrets with `sealer`.
    /// Returns each stored partner's problem, if it could not be built (it takes no
    /// deliveries; a previous good version of it is not kept, as its secrets may be the
    /// reason it changed).
    pub fn apply_stored(
        &self,
        stored: &[StoredPartner],
        sealer: Option<&Sealer>,
    ) -> HashMap<String, String> {
        let current = self.registry();
        let mut next: HashMap<String, Arc<Partner>> = current
            .iter()
            .filter(|(_, p)| p.source == Source::File)
            .map(|(name, p)| (name.clone(), Arc::clone(p)))
            .collect();
        let mut problems = HashMap::new();
        let mut held: std::collections::HashSet<String> = stored
            .iter()
            .filter(|p| !p.enabled && !next.contains_key(&p.name))
            .map(|p| p.name.clone())
            .collect();
        for partner in stored.iter().filter(|p| p.enabled) {
            if next.contains_key(&partner.name) {
                problems.insert(
                    partner.name.clone(),
                    "the configuration file defines a partner of this name".to_owned(),
                );
                continue;
            }
            let version = Source::Database {
                version: partner.version,
            };
            if let Some(same) = current.get(&partner.name).filter(|p| p.source == version) {
                next.insert(partner.name.clone(), Arc::clone(same));
                continue;
            }
            match self.build(partner, sealer) {
                Ok((built, warning)) => {
                    next.insert(partner.name.clone(), Arc::new(built));
                    if let Some(warning) = warning {
                        problems.insert(partner.name.clone(), warning);
                    }
                }
                Err(problem) => {
                    tracing::error!(partner = %partner.name, %problem, "a stored partner takes no deliveries");
                    held.insert(partner.name.clone());
                    problems.insert(partner.name.clone(), problem);
                }
            }
        }
        match self.partners.write() {
            Ok(mut partners) => *partners = Arc::new(next),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(next),
        }
        match self.held.write() {
            Ok(mut current) => *current = Arc::new(held),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(held),
        }
        problems
    }

    /// The partner, and what of it this node could not use (secrets that do not open).
    fn build(
        &self,
        stored: &StoredPartner,
        sealer: Option<&Sealer>,
    ) -> Result<(Partner, Option<String>), String> {
        let mut keys = Vec::new();
        let mut first = None;
        let secrets: Vec<_> = stored.secrets.iter().map(Some).collect();
        // A scheme without a secret (`none`) builds once, from the definition alone.
        let secrets = if secrets.is_empty() {
            vec![None]
        } else {
            secrets
        };
        let mut unopened = Vec::new();
        let script = stored.script.as_ref().and_then(|version| {
            Some(Arc::new(SavedScript {
                number: version.number,
                source: version.source.clone()?,
            }))
        });
        for secret in secrets {
            let opened = match (secret, sealer) {
                (None, _) => None,
                (Some(secret), Some(sealer)) => {
                    match sealer.open(&secret.sealed, &seal_context(&stored.name, &secret.label)) {
                        Ok(opened) => Some(opened),
                        // One secret this node cannot open (sealed under another key) must
                        // not take the partner's other secrets down with it.
                        Err(error) => {
                            tracing::error!(partner = %stored.name, label = %secret.label, %error, "a partner's secret does not open with this node's secret_key");
                            unopened.push(format!("secret {:?}: {error}", secret.label));
                            continue;
                        }
                    }
                }
                (Some(_), None) => {
                    return Err("its secrets are sealed and this node has no secret_key".into());
                }
            };
            let config =
                crate::config::stored_partner(&stored.definition, opened.as_ref(), script.clone())
                    .map_err(|e| e.to_string())?;
            keys.push(Key {
                label: secret.map(|s| s.label.clone()),
                valid_from: secret.and_then(|s| s.valid_from),
                valid_until: secret.and_then(|s| s.valid_until),
                scheme: config.auth,
            });
            if first.is_none() {
                first = Some((
                    config.handler,
                    config.rate_limit,
                    config.on_handler_error,
                    config.undeclared_charset,
                ));
            }
        }
        let (Some((spec, rate_limit, on_handler_error, undeclared)), Some(keys)) =
            (first, Keyring::new(keys))
        else {
            return Err(if unopened.is_empty() {
                "no secret".into()
            } else {
                unopened.join("; ")
            });
        };
        let warning = (!unopened.is_empty()).then(|| unopened.join("; "));
        let partner = Partner {
            handler: spec.build(),
            spec,
            keys,
            source: Source::Database {
                version: stored.version,
            },
            limiter: rate_limit.map(limiter),
            body: BodyPolicy {
                max_bytes: self.max_body_bytes,
                undeclared,
            },
            on_handler_error,
        };
        Ok((partner, warning))
    }

    /// Every partner as operators see it: the file's, then the database's (with those that
    /// take no deliveries and why), by name.
    pub fn catalogue(
        &self,
        stored: &[StoredPartner],
        problems: &HashMap<String, String>,
    ) -> Vec<PartnerInfo> {
        let registry = self.registry();
        let mut partners: Vec<PartnerInfo> = registry
            .iter()
            .filter(|(_, p)| p.source == Source::File)
            .map(|(name, p)| PartnerInfo {
                name: name.clone(),
                handler: p.spec.name(),
                scheme: p.keys.primary().name(),
                managed_by: "file",
                enabled: true,
                secrets: Vec::new(),
                problem: None,
                script: None,
            })
            .collect();
        for partner in stored {
            let live = registry
                .get(&partner.name)
                .filter(|p| p.source != Source::File);
            let handler = partner.definition["handler"]
                .as_str()
                .and_then(|h| crate::config::STORED_HANDLERS.iter().find(|k| **k == h))
                .copied()
                .unwrap_or("unknown");
            partners.push(PartnerInfo {
                name: partner.name.clone(),
                handler,
                // A partner switched off is not built: its scheme is its definition's.
                scheme: live.map(|p| p.keys.primary().name()).unwrap_or_else(|| {
                    partner.definition["auth"]["scheme"]
                        .as_str()
                        .and_then(|given| crate::config::AUTH_SCHEMES.iter().find(|s| **s == given))
                        .copied()
                        .unwrap_or("unknown")
                }),
                managed_by: "database",
                enabled: partner.enabled,
                secrets: partner
                    .secrets
                    .iter()
                    .map(|s| SecretInfo {
                        id: s.id,
                        label: s.label.clone(),
                        valid_from: s.valid_from,
                        valid_until: s.valid_until,
                        created_at: s.created_at,
                    })
                    .collect(),
                problem: problems.get(&partner.name).cloned().or_else(|| {
                    let now = Utc::now();
                    (partner.enabled && !partner.secrets.iter().any(|s| s.valid_at(now))).then(
                        || {
                            "no secret is valid now: its deliveries are answered 503 (retry later) \
                         until one is"
                                .to_owned()
                        },
                    )
                }),
                script: partner.script.as_ref().map(|s| ScriptRef {
                    number: s.number,
                    version: s.version.clone(),
                }),
            });
        }
        partners.sort_by(|a, b| a.name.cmp(&b.name));
        partners
    }
}

/// Keeps a gateway's partners in step with the database: reloads when the registry's
/// version moved (polled by every node, [`PartnerSync::POLL`]), or at once after a change
/// this node made.
#[derive(Debug)]
pub struct PartnerSync {
    gateway: Arc<Gateway>,
    registry: Arc<dyn crate::store::partner_registry::PartnerRegistry>,
    sealer: Option<Sealer>,
    /// The version last loaded, and the stored partners that could not be built.
    loaded: tokio::sync::Mutex<(Option<i64>, HashMap<String, String>)>,
}

impl PartnerSync {
    /// How often every node looks at the registry's version: a partner added on one node
    /// takes deliveries on every other within about this long.
    pub const POLL: std::time::Duration = std::time::Duration::from_secs(1);

    pub fn new(
        gateway: Arc<Gateway>,
        registry: Arc<dyn crate::store::partner_registry::PartnerRegistry>,
        sealer: Option<Sealer>,
    ) -> PartnerSync {
        PartnerSync {
            gateway,
            registry,
            sealer,
            loaded: tokio::sync::Mutex::new((None, HashMap::new())),
        }
    }

    /// The key partners' secrets are sealed with, if this node has one.
    pub fn sealer(&self) -> Option<&Sealer> {
        self.sealer.as_ref()
    }

    pub fn registry(&self) -> &Arc<dyn crate::store::partner_registry::PartnerRegistry> {
        &self.registry
    }

    /// Reloads when the registry's version is not the one loaded.
    ///
    /// # Errors
    /// When the database cannot be read; the partners stay as they were.
    pub async fn poll(&self) -> Result<(), crate::store::StoreError> {
        let mut loaded = self.loaded.lock().await;
        let version = self.registry.registry_version().await?;
        if loaded.0 == Some(version) {
            return Ok(());
        }
        let stored = self.registry.stored_partners().await?;
        let problems = self.gateway.apply_stored(&stored, self.sealer.as_ref());
        *loaded = (Some(version), problems);
        Ok(())
    }

    /// Every partner as operators see it, read now.
    ///
    /// # Errors
    /// When the database cannot be read.
    pub async fn catalogue(&self) -> Result<Vec<PartnerInfo>, crate::store::StoreError> {
        self.poll().await?;
        let stored = self.registry.stored_partners().await?;
        let loaded = self.loaded.lock().await;
        Ok(self.gateway.catalogue(&stored, &loaded.1))
    }
}
