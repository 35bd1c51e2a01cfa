//! Rakam's recipes: a project's collections' typed schemas and its realtime reports as one
//! JSON document (`GET /recipe/export`), and that document installed into a project
//! (`POST /recipe/install`), so a setup moves from one project or server to another.
//!
//! The document is Rakam's `Recipe`: `collections` maps each collection to `columns`, a
//! list of `{field: {type, category}}`; `materialized_views` lists the project's views as
//! `/materialized-view/create` takes them, and `continuous_queries` is empty (Tally has
//! none yet). Realtime reports, which Rakam kept as continuous queries, are Tally's own
//! key `realtime`: the bodies `/realtime/create` takes.

use crate::collections::{collections, declare};
use crate::realtime::{self, Report, MAX_REPORTS};
use crate::Aggregator;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use tally_model::keys;
use tally_model::schema::{self, FieldType};
use tally_service::auth::{app_for_key, rakam_key, Role};
use tally_service::{json as json_response, read_json, RakamError};

type Res = Result<HttpResponse, RakamError>;

/// `GET /recipe/export` (master key).
pub async fn export(req: HttpRequest, st: web::Data<Aggregator>) -> Res {
    let app = app_for_key(
        &st.shared,
        rakam_key(&req, None, Role::Master),
        Role::Master,
    )
    .await?;
    let names = collections(&st, &app).await?;
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let schemas = schema::load(&st.shared.pool, &app.id, &refs).await?;
    let mut out = Map::new();
    for (name, s) in names.iter().zip(schemas) {
        let columns: Vec<Value> = s
            .fields
            .iter()
            .map(|(f, t)| json!({ f: {"type": t.name(), "category": null} }))
            .collect();
        out.insert(name.clone(), json!({ "columns": columns }));
    }
    let mut reports: Vec<Report> = realtime::load(&st.shared.pool, &app.id)
        .await?
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    reports.sort_by(|a, b| a.table_name.cmp(&b.table_name));
    let reports: Vec<Value> = reports.iter().map(report_json).collect();
    let mut views: Vec<Value> = Vec::new();
    let mut defs = tally_model::views::all(&st.shared.pool, &app.id).await?;
    defs.sort();
    for (_, def) in defs {
        // As created: when it was last computed belongs to this project only.
        if let Ok(mut v) = serde_json::from_str::<tally_archive::views::View>(&def) {
            v.last_update = None;
            views.push(v.to_json());
        }
    }
    Ok(json_response(
        json!({
            "strategy": "DEFAULT",
            "collections": out,
            "materialized_views": views,
            "continuous_queries": [],
            "realtime": reports,
        })
        .to_string(),
    ))
}

/// A report as `/realtime/create` takes it (without when it was made).
fn report_json(r: &Report) -> Value {
    json!({
        "name": r.name,
        "table_name": r.table_name,
        "collections": r.collections,
        "measures": r.measures,
        "dimensions": r.dimensions,
        "filter": r.filter,
    })
}

#[derive(Deserialize)]
struct Recipe {
    #[serde(default)]
    strategy: Option<String>,
    #[serde(default)]
    collections: BTreeMap<String, Collection>,
    #[serde(default)]
    materialized_views: Vec<Value>,
    #[serde(default)]
    continuous_queries: Vec<Value>,
    #[serde(default)]
    realtime: Vec<Report>,
}

#[derive(Deserialize)]
struct Collection {
    #[serde(default)]
    columns: Vec<BTreeMap<String, Column>>,
}

#[derive(Deserialize)]
struct Column {
    #[serde(rename = "type")]
    kind: String,
}

/// `POST /recipe/install` (master key): adds the recipe's collections' fields and its
/// realtime reports. Everything is checked first (types, conflicts with what the project
/// has, limits): a recipe that cannot be installed whole is a 400 that writes nothing.
/// What the project already has, the same, is left as it is.
pub async fn install(req: HttpRequest, payload: web::Payload, st: web::Data<Aggregator>) -> Res {
    let body = read_json(payload, &st.shared.limits).await?;
    let app = app_for_key(
        &st.shared,
        rakam_key(&req, Some(&body), Role::Master),
        Role::Master,
    )
    .await?;
    if body.is_null() {
        return Err(RakamError::bad(
            "The body must be a recipe: {collections, realtime, ...} as /recipe/export answers",
        ));
    }
    let recipe: Recipe = serde_json::from_value(body)
        .map_err(|e| RakamError::bad(format!("Invalid recipe: {e}")))?;
    if let Some(s) = recipe.strategy.as_deref() {
        if s != "DEFAULT" && s != "SPECIFIC" {
            return Err(RakamError::bad(format!(
                "Invalid recipe: strategy {s:?} (DEFAULT or SPECIFIC)"
            )));
        }
    }
    if !recipe.materialized_views.is_empty() || !recipe.continuous_queries.is_empty() {
        return Err(RakamError::bad(
            "Invalid recipe: a recipe's materialized views are not installed by Tally yet (create each with /materialized-view/create), and Tally has no continuous queries yet",
        ));
    }
    // The fields of each collection, typed.
    let mut wanted: BTreeMap<String, BTreeMap<String, FieldType>> = BTreeMap::new();
    for (name, c) in &recipe.collections {
        let fields = wanted.entry(name.clone()).or_default();
        for col in &c.columns {
            for (field, Column { kind }) in col {
                let t = FieldType::parse(kind).ok_or_else(|| {
                    RakamError::bad(format!(
                        "Invalid recipe: {name}.{field} has the unknown type {kind:?}"
                    ))
                })?;
                if fields.insert(field.clone(), t).is_some_and(|old| old != t) {
                    return Err(RakamError::bad(format!(
                        "Invalid recipe: {name}.{field} is given two types"
                    )));
                }
            }
        }
    }
    let refs: Vec<&str> = wanted.keys().map(String::as_str).collect();
    let have = schema::load(&st.shared.pool, &app.id, &refs).await?;
    for ((name, fields), s) in wanted.iter().zip(&have) {
        for (field, t) in fields {
            if let Some(old) = s.fields.get(field).filter(|old| *old != t) {
                return Err(RakamError::bad(format!(
                    "The project's {name}.{field} is {}, the recipe's {}",
                    old.name(),
                    t.name()
                )));
            }
        }
    }
    let limits = &st.shared.limits;
    for ((name, fields), s) in wanted.iter().zip(&have) {
        let total = s.fields.len() + fields.keys().filter(|f| !s.fields.contains_key(*f)).count();
        if total > limits.schema_fields {
            return Err(RakamError::bad(format!(
                "{name} would have {total} fields, more than {} (TALLY_SCHEMA_FIELD_LIMIT)",
                limits.schema_fields
            )));
        }
    }
    let known = collections(&st, &app).await?;
    let new_collections = wanted.keys().filter(|n| !known.contains(n)).count();
    if known.len() + new_collections > limits.event_keys {
        return Err(RakamError::bad(format!(
            "The project would have {} collections, more than {}",
            known.len() + new_collections,
            limits.event_keys
        )));
    }
    let existing: HashMap<String, Report> = realtime::load(&st.shared.pool, &app.id)
        .await?
        .into_iter()
        .map(|(r, _)| (r.table_name.clone(), r))
        .collect();
    let mut new_reports = Vec::new();
    for r in recipe.realtime {
        r.validate()
            .map_err(|e| RakamError::bad(format!("Invalid report {}: {e}", r.table_name)))?;
        match existing.get(&r.table_name) {
            Some(old) if report_json(old) == report_json(&r) => {}
            Some(_) => {
                return Err(RakamError::bad(format!(
                    "The project has another report named {}",
                    r.table_name
                )))
            }
            None => new_reports.push(r),
        }
    }
    if existing.len() + new_reports.len() > MAX_REPORTS {
        return Err(RakamError::bad(format!(
            "At most {MAX_REPORTS} reports per app"
        )));
    }
    for (name, fields) in &wanted {
        declare(&st, &app, name, fields).await?;
    }
    if !new_reports.is_empty() {
        let now = st.shared.clock.now_ms();
        let mut pipe = redis::pipe();
        for mut r in new_reports {
            r.created = now;
            let def = serde_json::to_string(&r)
                .map_err(|e| RakamError::bad(format!("Invalid report: {e}")))?;
            pipe.cmd("HSET")
                .arg(keys::realtime_defs(&app.id))
                .arg(&r.table_name)
                .arg(def)
                .ignore();
        }
        st.shared
            .pool
            .run::<()>(keys::route(&app.id), &pipe)
            .await?;
    }
    Ok(json_response(
        json!({"success": true, "message": "Recipe installed"}).to_string(),
    ))
}
