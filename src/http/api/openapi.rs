//! The OpenAPI document of `/api/v1`, generated from the handlers' annotations and the body
//! types they serialise ([`super::bodies`]), with each operation's roles taken from
//! [`super::ROUTES`], the table the access checks read. `docs/openapi.json` is this document
//! as `sigil openapi` prints it; a test keeps the two equal.

use std::sync::OnceLock;

use actix_web::HttpResponse;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};
use utoipa::{Modify, OpenApi};

use super::ROUTES;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sigil API",
        version = "1",
        description = "Administration, MDM integration and approvals for Sigil. Every operation \
            but this document needs `Authorization: Bearer <token>` (or a console session); \
            the roles each one allows are listed in its description. Errors are \
            `{\"error\": code, \"message\": text}`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    servers((url = "/api/v1")),
    paths(
        super::tokens::create_token,
        super::tokens::list_tokens,
        super::tokens::revoke_token,
        super::tokens::approve_token,
        super::challenges::create_challenge,
        super::profiles::mobileconfig,
        super::profiles::ddm,
        super::profiles::registration_mobileconfig,
        super::profiles::scep_values,
        super::certificates::list_certificates,
        super::certificates::get_certificate,
        super::certificates::revoke_certificate,
        super::certificates::revoke_device,
        super::approvals::list_approvals,
        super::approvals::approve,
        super::approvals::reject,
        super::audit::audit,
        crate::http::registrations::credentials,
        crate::http::registrations::create,
        crate::http::registrations::list,
        crate::http::registrations::get,
        crate::http::registrations::refresh,
        crate::http::registrations::request,
        crate::http::registrations::approve,
        crate::http::registrations::reject,
        crate::http::registrations::revoke,
        crate::http::registrations::withdraw,
        crate::http::registrations::scep_payload,
    ),
    components(schemas(super::bodies::ApiError)),
    modifiers(&FromRoutes)
)]
struct ApiDoc;

/// Adds what every operation shares: the bearer scheme, the roles from [`ROUTES`], the
/// answers of the access check (401, 403, 429, 503) and of the body limit (413).
struct FromRoutes;

impl Modify for FromRoutes {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        doc.security = Some(vec![SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
        let error = |why: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(why)
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("ApiError")))
                            .build(),
                    )
                    .build(),
            )
        };
        for (path, item) in doc.paths.paths.iter_mut() {
            let full = format!("/api/v1{path}");
            for (method, op) in [
                ("GET", &mut item.get),
                ("POST", &mut item.post),
                ("DELETE", &mut item.delete),
            ] {
                let Some(op) = op.as_mut() else { continue };
                let roles = ROUTES
                    .iter()
                    .find(|(m, p, _)| *m == method && *p == full)
                    .map(|(_, _, roles)| *roles)
                    .unwrap_or(&[]);
                let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
                let line = format!("Roles: {}.", names.join(", "));
                op.description = Some(match op.description.take() {
                    Some(d) if !d.is_empty() => format!("{d}\n\n{line}"),
                    _ => line,
                });
                let answers = &mut op.responses.responses;
                answers.entry("401".into()).or_insert_with(|| {
                    error("No token, or a token that is unknown, revoked or expired")
                });
                answers.entry("403".into()).or_insert_with(|| {
                    error("The caller's roles do not include one of this operation's")
                });
                if method != "GET" {
                    answers
                        .entry("413".into())
                        .or_insert_with(|| error("The body is over 64 KiB"));
                }
                answers
                    .entry("429".into())
                    .or_insert_with(|| error("Too many failed authentications from this address"));
                answers
                    .entry("503".into())
                    .or_insert_with(|| error("The store or the token is unavailable; retry later"));
            }
        }
    }
}

/// The document as pretty JSON (what `docs/openapi.json` holds).
pub fn document() -> String {
    let mut doc = ApiDoc::openapi();
    // This document itself, public.
    let this = utoipa::openapi::path::OperationBuilder::new()
        .summary(Some("This document"))
        .operation_id(Some("openapi"))
        .tag("meta")
        .security(SecurityRequirement::default())
        .response(
            "200",
            ResponseBuilder::new()
                .description("The OpenAPI document")
                .content("application/json", ContentBuilder::new().build())
                .build(),
        )
        .build();
    doc.paths.add_path_operation(
        "/openapi.json",
        vec![utoipa::openapi::HttpMethod::Get],
        this,
    );
    let mut text = doc.to_pretty_json().unwrap_or_default();
    text.push('\n');
    text
}

/// `GET /api/v1/openapi.json`.
pub(super) async fn serve() -> HttpResponse {
    static DOC: OnceLock<String> = OnceLock::new();
    HttpResponse::Ok()
        .content_type("application/json")
        .body(DOC.get_or_init(document).clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> serde_json::Value {
        serde_json::from_str(&document()).unwrap()
    }

    #[test]
    fn every_route_with_roles_is_documented_and_nothing_else() {
        let d = doc();
        let paths = d["paths"].as_object().unwrap();
        let mut documented = Vec::new();
        for (path, ops) in paths {
            for method in ops.as_object().unwrap().keys() {
                if path != "/openapi.json" {
                    documented.push((method.to_ascii_uppercase(), format!("/api/v1{path}")));
                }
            }
        }
        documented.sort();
        let mut routes: Vec<(String, String)> = ROUTES
            .iter()
            .map(|(m, p, _)| (m.to_string(), p.to_string()))
            .collect();
        routes.sort();
        assert_eq!(documented, routes);
    }

    #[test]
    fn each_operation_names_its_roles_and_its_body_types_resolve() {
        let d = doc();
        let text = d.to_string();
        let schemas = d["components"]["schemas"].as_object().unwrap();
        // Every `$ref` names a schema the document defines.
        for part in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = part.split('"').next().unwrap();
            assert!(
                schemas.contains_key(name),
                "{name} is referenced, not defined"
            );
        }
        let op = &d["paths"]["/certificates/{serial}/revoke"]["post"];
        assert!(op["description"]
            .as_str()
            .unwrap()
            .ends_with("Roles: officer."));
        assert_eq!(
            op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/CertificateRevoked"
        );
        for s in [
            "CertificateView",
            "RegistrationView",
            "TokenView",
            "ScepPayload",
            "AuditRecord",
        ] {
            assert!(schemas.contains_key(s), "{s} missing");
        }
        // The public document asks for no token.
        assert_eq!(
            d["paths"]["/openapi.json"]["get"]["security"],
            serde_json::json!([{}])
        );
    }

    /// What a handler serialises has exactly the properties its schema lists.
    #[test]
    fn a_body_serialises_to_the_properties_its_schema_lists() {
        let d = doc();
        let schema = &d["components"]["schemas"]["CertificateRevoked"]["properties"];
        let body = serde_json::to_value(crate::http::api::bodies::CertificateRevoked {
            serial: "01".into(),
            status: "revoked",
            reason: "keyCompromise",
        })
        .unwrap();
        let mut a: Vec<&String> = schema.as_object().unwrap().keys().collect();
        let mut b: Vec<&String> = body.as_object().unwrap().keys().collect();
        a.sort();
        b.sort();
        assert_eq!(a, b);
    }

    #[test]
    fn the_published_document_is_the_generated_one() {
        let published = include_str!("../../../docs/openapi.json");
        assert!(
            published == document(),
            "docs/openapi.json is stale: run `cargo run --bin sigil -- openapi > docs/openapi.json`"
        );
    }
}
