//! The Data Transfer API (`/admin/datatransfer/v1`): the applications that support transfers,
//! and transfers (insert, get, list), which settle after a few reads.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Value, json};

use super::*;

/// `(param key, possible values)`
type TransferParam = (&'static str, Vec<&'static str>);

/// `(id, name, transfer params)` of the applications that support transfers.
fn applications() -> Vec<(&'static str, &'static str, Vec<TransferParam>)> {
    vec![
        (DRIVE_APP_ID, "Drive and Docs", vec![("PRIVACY_LEVEL", vec!["PRIVATE", "SHARED"])]),
        (CALENDAR_APP_ID, "Calendar", vec![("RELEASE_RESOURCES", vec!["TRUE"])]),
        (LOOKER_APP_ID, "Looker Studio", vec![]),
    ]
}

fn application_json(id: &str, name: &str, params: &[TransferParam]) -> Value {
    let mut v = json!({ "kind": "admin#datatransfer#ApplicationResource", "id": id, "name": name });
    if !params.is_empty() {
        v["transferParams"] = params.iter().map(|(k, vals)| json!({ "key": k, "value": vals })).collect();
    }
    with_etag(v)
}

pub(super) async fn list_applications(State(state): State<Workspace>, headers: HeaderMap) -> Response {
    guard!(state, headers);
    let apps: Vec<Value> = applications().iter().map(|(id, name, p)| application_json(id, name, p)).collect();
    ok(with_etag(json!({ "kind": "admin#datatransfer#applicationsList", "applications": apps })))
}

pub(super) async fn get_application(
    State(state): State<Workspace>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    guard!(state, headers);
    match applications().iter().find(|(app, _, _)| *app == id) {
        Some((id, name, p)) => ok(application_json(id, name, p)),
        None => not_found("applicationId"),
    }
}

fn transfer_json(t: &Transfer) -> Value {
    let app_status = match t.status.as_str() {
        "inProgress" => "pending",
        other => other,
    };
    with_etag(json!({
        "kind": "admin#datatransfer#DataTransfer",
        "id": t.id,
        "oldOwnerUserId": t.old_owner_user_id,
        "newOwnerUserId": t.new_owner_user_id,
        "applicationDataTransfers": t.applications.iter().map(|a| {
            let mut v = json!({ "applicationId": a.application_id, "applicationTransferStatus": app_status });
            if !a.params.is_empty() {
                v["applicationTransferParams"] =
                    a.params.iter().map(|(k, vals)| json!({ "key": k, "value": vals })).collect();
            }
            v
        }).collect::<Vec<_>>(),
        "overallTransferStatusCode": t.status,
        "requestTime": t.request_time,
    }))
}

/// A JSON string or number as a string (the API's int64 fields come as strings, but clients may
/// send numbers).
fn id_string(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Checks a transfer request against the users and the applications' parameters.
fn parse_transfer(data: &Data, body: &Value) -> Result<(String, String, Vec<AppTransfer>), String> {
    let old =
        id_string(body.get("oldOwnerUserId")).ok_or_else(|| "Missing required field: oldOwnerUserId".to_string())?;
    let new =
        id_string(body.get("newOwnerUserId")).ok_or_else(|| "Missing required field: newOwnerUserId".to_string())?;
    // The Data Transfer API takes ids, not emails.
    for (field, id) in [("oldOwnerUserId", &old), ("newOwnerUserId", &new)] {
        if !data.users.contains_key(id.as_str()) {
            return Err(format!("Invalid value for: {field}"));
        }
    }
    if old == new {
        return Err("The source and destination users must be different.".into());
    }
    let known = applications();
    let requested = body
        .get("applicationDataTransfers")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| "Missing required field: applicationDataTransfers".to_string())?;
    let mut apps = Vec::new();
    for app in requested {
        let id = id_string(app.get("applicationId"))
            .ok_or_else(|| "Missing required field: applicationDataTransfers.applicationId".to_string())?;
        let Some((_, _, allowed)) = known.iter().find(|(k, _, _)| *k == id) else {
            return Err(format!("Invalid value for: applicationId {id}"));
        };
        let mut params = Vec::new();
        for p in app.get("applicationTransferParams").and_then(Value::as_array).into_iter().flatten() {
            let key = p.get("key").and_then(Value::as_str).unwrap_or_default();
            let values: Vec<String> = p
                .get("value")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            let Some((_, possible)) = allowed.iter().find(|(k, _)| *k == key) else {
                return Err(format!("Invalid transfer parameter {key:?} for application {id}"));
            };
            if let Some(bad) = values.iter().find(|v| !possible.contains(&v.as_str())) {
                return Err(format!("Invalid value {bad:?} for transfer parameter {key}"));
            }
            params.push((key.to_string(), values));
        }
        apps.push(AppTransfer { application_id: id, params });
    }
    Ok((old, new, apps))
}

pub(super) async fn insert_transfer(State(state): State<Workspace>, headers: HeaderMap, body: Bytes) -> Response {
    guard!(state, headers);
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        _ => return invalid("Invalid JSON payload received."),
    };
    with_data(&state, |data| {
        let (old, new, applications) = match parse_transfer(data, &body) {
            Ok(t) => t,
            Err(message) => return invalid(&message),
        };
        let new_owner_suspended = data.users.get(&new).is_some_and(|u| u.suspended);
        let fails = std::mem::take(&mut data.fail_next_transfer) || new_owner_suspended;
        let request_time =
            time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        let transfer = Transfer {
            id: format!("AKrEtIYG{:06}", data.transfers.len() + 1),
            old_owner_user_id: old,
            new_owner_user_id: new,
            applications,
            status: "inProgress".into(),
            polls: 0,
            settles_to: if fails { "failed" } else { "completed" }.into(),
            request_time,
        };
        let body = transfer_json(&transfer);
        data.transfers.push(transfer);
        ok(body)
    })
}

/// `transfers.get`: each fetch moves the transfer along; after `polls_to_settle` fetches it settles.
pub(super) async fn get_transfer(
    State(state): State<Workspace>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    guard!(state, headers);
    with_data(&state, |data| {
        let polls_to_settle = data.polls_to_settle;
        let Some(t) = data.transfers.iter_mut().find(|t| t.id == id) else { return not_found("dataTransferId") };
        if t.status == "inProgress" {
            t.polls += 1;
            if t.polls > polls_to_settle {
                t.status = t.settles_to.clone();
            }
        }
        ok(transfer_json(t))
    })
}

/// `transfers.list`, filtered by `oldOwnerUserId`, `newOwnerUserId` and `status`, newest first.
pub(super) async fn list_transfers(
    State(state): State<Workspace>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    guard!(state, headers);
    let (size, offset) = match paging(&q, 100, 500) {
        Ok(p) => p,
        Err(message) => return invalid(&message),
    };
    with_data(&state, |data| {
        let matches = |t: &&Transfer| {
            q.get("oldOwnerUserId").is_none_or(|v| *v == t.old_owner_user_id)
                && q.get("newOwnerUserId").is_none_or(|v| *v == t.new_owner_user_id)
                && q.get("status").is_none_or(|v| *v == t.status)
        };
        let all: Vec<&Transfer> = data.transfers.iter().rev().filter(matches).collect();
        let page: Vec<Value> = all.iter().skip(offset).take(size).map(|t| transfer_json(t)).collect();
        let mut body = json!({ "kind": "admin#datatransfer#dataTransfersList" });
        if !page.is_empty() {
            body["dataTransfers"] = Value::Array(page);
        }
        if offset + size < all.len() {
            body["nextPageToken"] = json!(page_token(offset + size));
        }
        ok(with_etag(body))
    })
}
