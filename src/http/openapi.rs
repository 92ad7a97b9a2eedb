//! The admin API's OpenAPI 3 document, served at `/api/v1/openapi.json`.
//!
//! Generated from the annotations beside each handler (`#[utoipa::path]`) and the types it
//! takes and returns (`ToSchema`), so the document changes with the code; a test checks
//! that every documented operation exists and answers, and schemathesis checks the answers
//! against their schemas.

use axum::Json;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::{admin, events, partner_scripts, partner_settings, platform, users, webhooks};

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
        admin::match_sale, admin::unmatch_sale, events::events, events::event, events::replay,
        events::replay_one, admin::health, admin::purge,
        platform::put_booking, platform::sync_bookings, platform::bookings, platform::changes,
        webhooks::create_subscription, webhooks::subscriptions, webhooks::subscription,
        webhooks::update_subscription, webhooks::delete_subscription, webhooks::messages,
        webhooks::resend,
        users::me, users::my_tokens, users::create_my_token, users::revoke_my_token,
        users::users, users::create_user, users::user, users::update_user, users::user_tokens,
        users::create_user_token, users::revoke_user_token, users::audit,
        partner_settings::partners, partner_settings::create_partner, partner_settings::partner,
        partner_settings::update_partner, partner_settings::add_secret,
        partner_settings::retire_secret, partner_settings::add_location,
        partner_scripts::script, partner_scripts::version, partner_scripts::save_script,
        partner_scripts::try_script,
    ),
    modifiers(&AdminToken, &CommonAnswers),
    tags(
        (name = "venues", description = "Venues and the partner locations they own"),
        (name = "diary", description = "Bookings, the diary of a day, guests"),
        (name = "sales", description = "Sales and how they are matched to bookings"),
        (name = "events", description = "Stored partner events, replay, partner health"),
        (name = "platform", description = "The booking platform's bookings by its own reference, and the change feed"),
        (name = "webhooks", description = "Subscriptions to the diary's messages (Standard Webhooks)"),
        (name = "partners", description = "Partners kept in the database, their secrets and their rotation, their scripts"),
        (name = "users", description = "Operators' accounts and roles, personal tokens, the audit trail"),
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
                    .description(Some(
                        "The admin token (`admin_token` in the configuration), or a user's \
                         personal token (`dsk_...`) with that user's role and venues",
                    ))
                    .build(),
            ),
        );
    }
}

/// The answers every operation can give, declared once rather than on each handler: the
/// token is checked before any handler runs, and every path id, query and JSON body is
/// read by the same extractors, which answer 400 (unreadable) rather than a framework
/// default. Clients and schemathesis's status-code check rely on them being listed.
struct CommonAnswers;

impl CommonAnswers {
    const ANSWERS: [(&'static str, &'static str); 6] = [
        (
            "400",
            "The request cannot be read: a path id that is not an integer, an unknown or \
             malformed query parameter, a body that is not JSON or not sent as JSON",
        ),
        (
            "401",
            "The token is missing, wrong, revoked or expired, or its user is disabled",
        ),
        (
            "403",
            "The token's role may not do this (another venue's data answers 404 instead)",
        ),
        ("413", "The body is over the size limit"),
        (
            "503",
            "Busy for a moment (the database cannot take the request now, a venue's diary \
             held by another write, too many password hashes at once): retry after \
             Retry-After",
        ),
        (
            "422",
            "The body is JSON but not what the operation takes: a missing or unknown field, \
             a wrong type, a value out of range",
        ),
    ];
}

impl Modify for CommonAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let error_body = || {
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build()
        };
        for item in openapi.paths.paths.values_mut() {
            let operations: [&mut Option<Operation>; 5] = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                for (status, description) in Self::ANSWERS {
                    let about_the_body = matches!(status, "413" | "422");
                    if about_the_body && operation.request_body.is_none() {
                        continue;
                    }
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| {
                            RefOr::T(
                                ResponseBuilder::new()
                                    .description(description)
                                    .content("application/json", error_body())
                                    .build(),
                            )
                        });
                }
            }
        }
    }
}

/// The document itself.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

pub(super) async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}
