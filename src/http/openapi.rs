//! The admin API's OpenAPI 3 document, served at `/api/v1/openapi.json`.
//!
//! Generated from the annotations beside each handler (`#[utoipa::path]`) and the types it
//! takes and returns (`ToSchema`), so the document changes with the code; a test checks
//! that every documented operation exists and answers, and schemathesis checks the answers
//! against their schemas.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::admin;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "diarysync admin API",
        description = "Venues, the diary, sales and their matching, and the stored partner \
                       events. Money is a decimal string; times are RFC 3339 UTC.",
    ),
    paths(
        admin::venues, admin::create_venue, admin::venue, admin::update_venue, admin::diary,
        admin::venue_sales, admin::create_booking, admin::booking, admin::update_booking,
        admin::cancel_booking, admin::guest, admin::sales, admin::sale, admin::suggestions,
        admin::match_sale, admin::unmatch_sale, admin::events, admin::event, admin::replay,
        admin::replay_one, admin::health, admin::purge,
    ),
    modifiers(&AdminToken),
    tags(
        (name = "venues", description = "Venues and the partner locations they own"),
        (name = "diary", description = "Bookings, the diary of a day, guests"),
        (name = "sales", description = "Sales and how they are matched to bookings"),
        (name = "events", description = "Stored partner events, replay, partner health"),
    )
)]
struct ApiDoc;

/// The bearer scheme every operation names.
struct AdminToken;

impl Modify for AdminToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The admin token (`admin_token` in the configuration)"))
                    .build(),
            ),
        );
    }
}

/// The document itself.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

pub(super) async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}
