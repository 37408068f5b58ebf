//! A person's own credentials: their registrations, starting one, choosing the device, and
//! the registration page (which officers see too, with their decisions on it).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::{field, message, render, see_other, unavailable, when, Visit};
use crate::authority::access::Role;
use crate::authority::registration::RegistrationError;
use crate::authority::{RegistrationRecord, RegistrationState};
use crate::http::AppState;

/// What a registration's state means, in words.
pub(super) fn state_text(r: &RegistrationRecord) -> String {
    match r.state {
        RegistrationState::Open => {
            "Started: choose the device that should receive the credential.".into()
        }
        RegistrationState::Requested => "Waiting for a security officer's decision.".into(),
        RegistrationState::Approved if r.expires_at >= crate::authority::registration::LASTING => "Delivered: the device is in the MDM's group, and Intune enrolls it with its own challenge. It lasts until a security officer withdraws it.".into(),
        RegistrationState::Approved => "Approved: waiting for the device to collect its certificate (the MDM sends it the enrollment profile).".into(),
        RegistrationState::Issued => "Issued: the device has its certificate.".into(),
        RegistrationState::Rejected => match r.comment.as_deref().filter(|c| !c.is_empty()) {
            Some(c) => format!("Rejected by a security officer: {c}"),
            None => "Rejected by a security officer.".into(),
        },
        RegistrationState::Expired => {
            "Closed: withdrawn, or no next step happened in time.".into()
        }
    }
}

/// A registration as the pages show it.
pub(super) fn registration_view(r: &RegistrationRecord) -> Value {
    let devices: Value = serde_json::from_str(&r.devices).unwrap_or_else(|_| json!([]));
    let device: Value = r
        .device
        .as_deref()
        .and_then(|d| serde_json::from_str(d).ok())
        .unwrap_or(Value::Null);
    json!({
        "id": r.id,
        "email": r.email,
        "credential": r.credential,
        "state": r.state.as_str(),
        "state_text": state_text(r),
        "devices": devices,
        "directory_error": r.directory_error,
        "device_id": r.device_id,
        "device": device,
        "subject": r.subject,
        "sans": r.sans,
        "created_by": r.created_by,
        "requested_by": r.requested_by,
        "decided_by": r.decided_by,
        "comment": r.comment,
        "serial": r.serial,
        "created_at": when(r.created_at),
        "updated_at": when(r.updated_at),
        // Only while a next step is due: a registration lasting until withdrawn has none.
        "expires_at": matches!(
            r.state,
            RegistrationState::Open | RegistrationState::Requested | RegistrationState::Approved
        )
        .then_some(r.expires_at)
        .filter(|at| *at < crate::authority::registration::LASTING)
        .map(when),
    })
}

/// A registration refusal as a page.
pub(super) fn refused(visit: &Visit, e: RegistrationError, back: &str) -> HttpResponse {
    let (status, title) = match &e {
        RegistrationError::NotFound => (StatusCode::NOT_FOUND, "Not found"),
        RegistrationError::Forbidden(_) => (StatusCode::FORBIDDEN, "Not allowed"),
        RegistrationError::WrongState(_) => (StatusCode::CONFLICT, "Already moved on"),
        RegistrationError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "Not accepted"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "Temporarily unavailable"),
    };
    tracing::warn!(actor = %visit.caller.actor, error = %e, "console: registration action refused");
    message(status, Some(visit), title, &e.to_string(), back)
}

/// `/console/me`: my registrations, a form to start one, my certificates.
pub(super) async fn me(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let visit = match Visit::open(&req, &state, &[Role::User]).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let regs = match state.ra.registrations(&visit.caller, None).await {
        Ok(r) => r,
        Err(e) => return refused(&visit, e, "/console/"),
    };
    let mut certificates = Vec::new();
    for r in regs.iter() {
        if let Some(serial) = &r.serial {
            match state.ra.certificate(serial).await {
                Ok(Some(c)) => certificates.push(json!({
                    "serial": c.serial,
                    "subject": c.subject,
                    "status": if c.revoked_at.is_some() { "revoked" } else { "valid" },
                    "not_after": when(c.not_after),
                    "registration": r.id,
                })),
                Ok(None) => {}
                Err(e) => return unavailable(e),
            }
        }
    }
    render(
        StatusCode::OK,
        "me.html",
        "My credentials",
        Some(&visit),
        json!({
            "registrations": regs.iter().map(registration_view).collect::<Vec<_>>(),
            "credentials": state.ra.credential_list(),
            "certificates": certificates,
        }),
    )
}

/// Start a registration for myself.
pub(super) async fn start(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> HttpResponse {
    let (visit, form) = match Visit::form(&req, &state, &[Role::User], &body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(email) = visit.caller.person.email.clone() else {
        return message(
            StatusCode::UNPROCESSABLE_ENTITY,
            Some(&visit),
            "No email address",
            "Your identity provider gives no email address for you, and registrations are by email. Ask your administrator to release the email claim to Sigil.",
            "/console/me",
        );
    };
    let mut caller = visit.acting(Role::User);
    caller.name = email.clone();
    match state
        .ra
        .register(&caller, &email, field(&form, "credential"))
        .await
    {
        Ok(r) => see_other(&format!("/console/registrations/{}", r.id)),
        Err(e) => refused(&visit, e, "/console/me"),
    }
}

/// The roles a registration page is for; a person acts on it as an officer when they are
/// one, else as its owner.
const VIEWERS: &[Role] = &[Role::User, Role::Officer, Role::Auditor, Role::Admin];

/// `/console/registrations/{id}`.
pub(super) async fn registration(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> HttpResponse {
    let mut visit = match Visit::open(&req, &state, VIEWERS).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    // A person who is an officer decides here, whatever stronger role they also hold.
    if visit.caller.roles.contains(&Role::Officer) {
        visit.caller.role = Role::Officer;
    }
    let r = match state.ra.registration(&visit.caller, &id).await {
        Ok(r) => r,
        Err(e) => return refused(&visit, e, "/console/"),
    };
    let officer = visit.caller.role == Role::Officer;
    // The two-person rule, as a sentence, before the officer tries.
    let mut blocked = None;
    if officer {
        if visit.caller.person.has_email(&r.email) {
            blocked = Some("This credential is for you, so another officer must decide.");
        } else if let Some(filer) = &r.requested_by {
            match state.ra.person_of(filer).await {
                Ok(p) if p.same_as(&visit.caller.person) => {
                    blocked = Some("You filed this request, so another officer must decide.")
                }
                Ok(_) => {}
                Err(e) => return unavailable(e),
            }
        }
    }
    let filed_by = match &r.requested_by {
        Some(a) => match state.ra.person_of(a).await {
            Ok(p) => Some(p.name),
            Err(e) => return unavailable(e),
        },
        None => None,
    };
    let mine = visit.caller.person.has_email(&r.email);
    let pushes = match state.ra.registration_pushes(&r.id).await {
        Ok(p) => p
            .iter()
            .map(crate::http::api::bodies::PushView::from)
            .collect::<Vec<_>>(),
        Err(e) => return unavailable(e),
    };
    render(
        StatusCode::OK,
        "registration.html",
        &format!("Registration for {}", r.email),
        Some(&visit),
        json!({
            "r": registration_view(&r),
            "officer": officer,
            "may_request": r.state == RegistrationState::Open && (mine || officer),
            "may_decide": officer && r.state == RegistrationState::Requested,
            "may_withdraw": officer && matches!(r.state, RegistrationState::Open | RegistrationState::Requested | RegistrationState::Approved),
            "may_revoke": officer && r.state == RegistrationState::Issued,
            "blocked": blocked,
            "filed_by": filed_by,
            "pushes": pushes,
            "pushes_to_mdm": state.ra.pushes_for(&r.credential),
        }),
    )
}

/// Choose the device.
pub(super) async fn request(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let (visit, form) = match Visit::form(&req, &state, &[Role::User, Role::Officer], &body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let back = format!("/console/registrations/{id}");
    let mut caller = visit.caller.clone();
    if caller.role == Role::User {
        caller.name = visit.caller.person.email.clone().unwrap_or_default();
    }
    match state
        .ra
        .request(&caller, &id, field(&form, "device_id"))
        .await
    {
        Ok(_) => see_other(&back),
        Err(e) => refused(&visit, e, &back),
    }
}
