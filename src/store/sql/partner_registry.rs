//! [`PartnerRegistry`] on the SQL store.

use async_trait::async_trait;
use serde_json::Value;

use super::SqlStore;
use crate::domain::access::Actor;
use crate::store::StoreError;
use crate::store::partner_registry::{self as registry, NewSecret, PartnerRegistry, StoredPartner};
use crate::store::partner_scripts::{NewScript, Saved, ScriptVersion};

#[async_trait]
impl PartnerRegistry for SqlStore {
    async fn registry_version(&self) -> Result<i64, StoreError> {
        self.read(|conn| Box::pin(registry::version(conn))).await
    }

    async fn stored_partners(&self) -> Result<Vec<StoredPartner>, StoreError> {
        self.read(|conn| Box::pin(registry::list(conn))).await
    }

    async fn create_partner(
        &self,
        name: String,
        definition: Value,
        secret: Option<NewSecret>,
        script: Option<NewScript>,
        by: Actor,
    ) -> Result<(), StoreError> {
        self.write(move |conn| {
            Box::pin(async move {
                registry::create(
                    conn,
                    &name,
                    &definition,
                    secret.as_ref(),
                    script.as_ref(),
                    &by,
                )
                .await
            })
        })
        .await
    }

    async fn update_partner(
        &self,
        name: String,
        definition: Option<Value>,
        enabled: Option<bool>,
        by: Actor,
    ) -> Result<(), StoreError> {
        self.write(move |conn| {
            Box::pin(async move {
                registry::update(conn, &name, definition.as_ref(), enabled, &by).await
            })
        })
        .await
    }

    async fn add_secret(
        &self,
        partner: String,
        secret: NewSecret,
        by: Actor,
    ) -> Result<i64, StoreError> {
        self.write(move |conn| {
            Box::pin(async move { registry::add_secret(conn, &partner, &secret, &by).await })
        })
        .await
    }

    async fn retire_secret(&self, partner: String, id: i64, by: Actor) -> Result<(), StoreError> {
        self.write(move |conn| {
            Box::pin(async move { registry::retire_secret(conn, &partner, id, &by).await })
        })
        .await
    }

    async fn save_script(
        &self,
        partner: String,
        script: NewScript,
        by: Actor,
    ) -> Result<Saved, StoreError> {
        self.write(move |conn| {
            Box::pin(async move { registry::save_script(conn, &partner, &script, &by).await })
        })
        .await
    }

    async fn script_versions(&self, partner: String) -> Result<Vec<ScriptVersion>, StoreError> {
        self.read(move |conn| {
            Box::pin(async move { registry::script_versions(conn, &partner).await })
        })
        .await
    }

    async fn script_version(
        &self,
        partner: String,
        number: i64,
    ) -> Result<Option<ScriptVersion>, StoreError> {
        self.read(move |conn| {
            Box::pin(async move { registry::script_version(conn, &partner, number).await })
        })
        .await
    }
}
