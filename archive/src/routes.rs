//! Rakam's query API: `/query/execute`, `/query/explain`, `/query/metadata`, with the
//! read key (or the master key) of the project whose tables the query reads.

use crate::sql::{Answer, Engine, Mode, Outcome, QueryError};
use crate::views::View;
use crate::Error;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use tally_service::auth::{app_for_key, rakam_key, Role};
use tally_service::{json as json_response, read_json, ApiError, RakamError, Shared};

/// What the query routes need.
pub struct Sql {
    pub shared: Shared,
    pub engine: Engine,
}

type Res = Result<HttpResponse, RakamError>;

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::Bad(m) => ApiError::BadRequest(m),
            QueryError::Busy(m) => ApiError::Busy(m),
            QueryError::Failed(Error::Store(s)) => s.into(),
            QueryError::Failed(Error::Object(o)) => {
                tracing::warn!(error = %o, "archive storage failed during a query");
                ApiError::Unavailable("The archive's storage is unavailable".into())
            }
            QueryError::Failed(other) => ApiError::Internal(other.to_string()),
        }
    }
}

fn fail(e: QueryError) -> RakamError {
    RakamError(e.into())
}

/// The body's `query`, and the project it runs for.
async fn begin(
    req: &HttpRequest,
    payload: web::Payload,
    st: &Sql,
) -> Result<(Value, std::sync::Arc<tally_model::apps::App>, String), RakamError> {
    let body = read_json(payload, &st.shared.limits).await?;
    let app = app_for_key(
        &st.shared,
        rakam_key(req, Some(&body), Role::Read),
        Role::Read,
    )
    .await?;
    let query = match body.get("query") {
        Some(Value::String(q)) if !q.trim().is_empty() => q.clone(),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(RakamError::bad("Missing parameter \"query\""))
        }
        Some(_) => return Err(RakamError::bad("\"query\" must be a string")),
    };
    Ok((body, app, query))
}

/// How the answer is to be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Export {
    Json,
    Csv,
}

fn export_of(body: &Value) -> Result<Export, RakamError> {
    match body.get("export_type") {
        None | Some(Value::Null) => Ok(Export::Json),
        Some(Value::String(s)) => match s.to_ascii_uppercase().as_str() {
            // rakam-client sends "" unless told otherwise.
            "" | "JSON" => Ok(Export::Json),
            "CSV" => Ok(Export::Csv),
            "AVRO" => Err(RakamError::bad(
                "export_type AVRO is not supported: use JSON or CSV",
            )),
            other => Err(RakamError::bad(format!(
                "Unknown export_type \"{other}\": use JSON or CSV"
            ))),
        },
        Some(_) => Err(RakamError::bad("\"export_type\" must be a string")),
    }
}

/// `POST /query/execute` `{query, limit?, export_type?}`: Rakam's `QueryResult`
/// (`metadata`, `result`, `properties`), or CSV with a header row.
pub async fn execute(req: HttpRequest, payload: web::Payload, st: web::Data<Sql>) -> Res {
    let (body, app, query) = begin(&req, payload, &st).await?;
    let export = export_of(&body)?;
    let limit = match body.get("limit") {
        None | Some(Value::Null) => st.engine.max_rows(),
        Some(v) => match v.as_u64() {
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
            None => return Err(RakamError::bad("\"limit\" must be a non-negative integer")),
        },
    };
    let out = st
        .engine
        .query(&st.shared.pool, &app, &query, Mode::Run { limit })
        .await
        .map_err(fail)?;
    let Outcome::Rows(answer) = out else {
        return Err(RakamError(ApiError::Internal("unexpected answer".into())));
    };
    Ok(match export {
        Export::Json => json_response(result_json(&answer, limit).to_string()),
        Export::Csv => HttpResponse::Ok()
            .content_type("text/csv; charset=utf-8")
            .body(csv(&answer)),
    })
}

/// Rakam's `QueryResult`.
pub fn result_json(a: &Answer, limit: usize) -> Value {
    json!({
        "metadata": a.columns.iter().map(|(n, t)| json!({"name": n, "type": t})).collect::<Vec<_>>(),
        "result": a.rows,
        "properties": {"limit": limit, "rows": a.rows.len()},
        "failed": false,
    })
}

/// RFC 4180 CSV: a header row, then one line a row; nulls empty, nested values as JSON.
fn csv(a: &Answer) -> String {
    fn field(out: &mut String, s: &str) {
        if s.contains([',', '"', '\n', '\r']) {
            out.push('"');
            out.push_str(&s.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(s);
        }
    }
    let mut out = String::new();
    for (i, (name, _)) in a.columns.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        field(&mut out, name);
    }
    out.push_str("\r\n");
    for row in &a.rows {
        for (i, v) in row.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            match v {
                Value::Null => {}
                Value::String(s) => field(&mut out, s),
                other => field(&mut out, &other.to_string()),
            }
        }
        out.push_str("\r\n");
    }
    out
}

/// `POST /query/explain` `{query}`: the query's logical and physical plans.
pub async fn explain(req: HttpRequest, payload: web::Payload, st: web::Data<Sql>) -> Res {
    let (_, app, query) = begin(&req, payload, &st).await?;
    match st
        .engine
        .query(&st.shared.pool, &app, &query, Mode::Explain)
        .await
        .map_err(fail)?
    {
        Outcome::Plan { logical, physical } => Ok(json_response(
            json!({"query": query, "logical_plan": logical, "physical_plan": physical}).to_string(),
        )),
        _ => Err(RakamError(ApiError::Internal("unexpected answer".into()))),
    }
}

/// `POST /query/metadata` `{query}`: the columns the query would answer, without running it.
pub async fn metadata(req: HttpRequest, payload: web::Payload, st: web::Data<Sql>) -> Res {
    let (_, app, query) = begin(&req, payload, &st).await?;
    match st
        .engine
        .query(&st.shared.pool, &app, &query, Mode::Metadata)
        .await
        .map_err(fail)?
    {
        Outcome::Columns(cols) => Ok(json_response(
            Value::from(
                cols.iter()
                    .map(|(n, t)| json!({"name": n, "type": t}))
                    .collect::<Vec<_>>(),
            )
            .to_string(),
        )),
        _ => Err(RakamError(ApiError::Internal("unexpected answer".into()))),
    }
}

async fn body_and_app(
    req: &HttpRequest,
    payload: web::Payload,
    st: &Sql,
    role: Role,
) -> Result<(Value, std::sync::Arc<tally_model::apps::App>), RakamError> {
    let body = read_json(payload, &st.shared.limits).await?;
    let app = app_for_key(&st.shared, rakam_key(req, Some(&body), role), role).await?;
    Ok((body, app))
}

fn table_name(body: &Value) -> Result<String, RakamError> {
    match body.get("table_name") {
        Some(Value::String(t)) if !t.is_empty() => Ok(t.clone()),
        _ => Err(RakamError::bad("Missing parameter \"table_name\"")),
    }
}

fn stored_view(json: &str) -> Result<View, RakamError> {
    serde_json::from_str(json).map_err(|e| {
        RakamError(ApiError::Internal(format!(
            "a stored view is unreadable: {e}"
        )))
    })
}

/// `POST /materialized-view/create` (master key) `{table_name, name, query,
/// update_interval?}`: computes the view at once (a query that fails is a 400 and
/// nothing is kept), then again every `update_interval`.
pub async fn view_create(req: HttpRequest, payload: web::Payload, st: web::Data<Sql>) -> Res {
    let (body, app) = body_and_app(&req, payload, &st, Role::Master).await?;
    let mut view: View = serde_json::from_value(body.clone())
        .map_err(|e| RakamError::bad(format!("Invalid materialized view: {e}")))?;
    let t = &view.table_name.clone();
    if t.is_empty() || t.len() > 64 || !t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(RakamError::bad("table_name: 1 to 64 letters, digits or _"));
    }
    if t == crate::sql::USERS
        || crate::sql::is_collection(&st.shared.pool, &app.id, t)
            .await
            .map_err(fail)?
    {
        return Err(RakamError::bad(format!(
            "table_name \"{t}\" is taken by a table of the project"
        )));
    }
    if view.name.trim().is_empty() || view.query.trim().is_empty() {
        return Err(RakamError::bad("name and query are required"));
    }
    if let Some(i) = &view.update_interval {
        if crate::views::parse_interval(i).is_none() {
            return Err(RakamError::bad(format!(
                "update_interval \"{i}\": use an ISO 8601 duration (PT1H), seconds, or \"N minutes|hours|days\""
            )));
        }
    }
    if view.incremental {
        return Err(RakamError::bad(
            "incremental views are not supported: leave incremental out, and the view is computed again every update_interval",
        ));
    }
    if tally_model::views::get(&st.shared.pool, &app.id, t)
        .await?
        .is_some()
    {
        return Err(RakamError::bad(format!(
            "A materialized view named {t} exists"
        )));
    }
    // Checked again atomically by `add`; here so a project at its limit computes nothing.
    if tally_model::views::count(&st.shared.pool, &app.id).await? >= st.engine.max_views() {
        return Err(over_limit(&st));
    }
    let Some(archive) = st.engine.archive() else {
        return Err(RakamError::bad(
            "Materialized views need the archive (TALLY_ARCHIVE_URL is off)",
        ));
    };
    crate::views::compute(&st.engine, archive, &st.shared.pool, &app, &view)
        .await
        .map_err(fail)?;
    view.last_update = Some(st.shared.clock.now_ms());
    match tally_model::views::add(
        &st.shared.pool,
        &app.id,
        &view.table_name,
        &view.to_json().to_string(),
        st.engine.max_views(),
    )
    .await?
    {
        tally_model::views::Added::Added => Ok(json_response(
            json!({"success": true, "message": "Materialized view created"}).to_string(),
        )),
        tally_model::views::Added::Exists => {
            // Another create of this name won the race, and this one's file replaced
            // its result: compute the winner's query again.
            if let Some(def) = tally_model::views::get(&st.shared.pool, &app.id, t).await? {
                let winner = stored_view(&def)?;
                crate::views::compute(&st.engine, archive, &st.shared.pool, &app, &winner)
                    .await
                    .map_err(fail)?;
            }
            Err(RakamError::bad(format!(
                "A materialized view named {t} exists"
            )))
        }
        tally_model::views::Added::OverLimit => {
            delete_file(archive, &app.id, t).await?;
            Err(over_limit(&st))
        }
    }
}

fn over_limit(st: &Sql) -> RakamError {
    RakamError::bad(format!(
        "At most {} materialized views per project (TALLY_VIEWS)",
        st.engine.max_views()
    ))
}

async fn delete_file(
    archive: &crate::Archive,
    app: &tally_model::keys::AppId,
    table: &str,
) -> Result<(), RakamError> {
    archive
        .delete(&crate::layout::view_file(app, table))
        .await
        .map_err(|e| fail(QueryError::Failed(e)))
}

/// `POST /materialized-view/delete` (master key) `{table_name}`.
pub async fn view_delete(req: HttpRequest, payload: web::Payload, st: web::Data<Sql>) -> Res {
    let (body, app) = body_and_app(&req, payload, &st, Role::Master).await?;
    let t = table_name(&body)?;
    if !tally_model::views::delete(&st.shared.pool, &app.id, &t).await? {
        return Err(RakamError(ApiError::NotFound(format!(
            "No materialized view named {t}"
        ))));
    }
    if let Some(archive) = st.engine.archive() {
        delete_file(archive, &app.id, &t).await?;
    }
    Ok(json_response(
        json!({"success": true, "message": "Materialized view deleted"}).to_string(),
    ))
}

/// `POST /materialized-view/get` (read key) `{table_name}`.
pub async fn view_get(req: HttpRequest, payload: web::Payload, st: web::Data<Sql>) -> Res {
    let (body, app) = body_and_app(&req, payload, &st, Role::Read).await?;
    let t = table_name(&body)?;
    let json = tally_model::views::get(&st.shared.pool, &app.id, &t)
        .await?
        .ok_or_else(|| {
            RakamError(ApiError::NotFound(format!(
                "No materialized view named {t}"
            )))
        })?;
    Ok(json_response(stored_view(&json)?.to_json().to_string()))
}

/// `POST /materialized-view/list` (read key).
pub async fn view_list(req: HttpRequest, payload: web::Payload, st: web::Data<Sql>) -> Res {
    let (_, app) = body_and_app(&req, payload, &st, Role::Read).await?;
    let mut all = tally_model::views::all(&st.shared.pool, &app.id).await?;
    all.sort();
    let views = all
        .iter()
        .map(|(_, j)| stored_view(j).map(|v| v.to_json()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json_response(Value::from(views).to_string()))
}

/// `POST /materialized-view/schema` (read key) `{names?}`: each view's columns.
pub async fn view_schema(req: HttpRequest, payload: web::Payload, st: web::Data<Sql>) -> Res {
    let (body, app) = body_and_app(&req, payload, &st, Role::Read).await?;
    let names: Option<Vec<String>> = match body.get("names") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => Some(
            a.iter()
                .map(|n| n.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .ok_or_else(|| RakamError::bad("\"names\" must be an array of strings"))?,
        ),
        Some(_) => return Err(RakamError::bad("\"names\" must be an array of strings")),
    };
    let mut all = tally_model::views::all(&st.shared.pool, &app.id).await?;
    all.sort();
    let mut out = Vec::new();
    for (t, _) in all {
        if names.as_ref().is_some_and(|n| !n.contains(&t)) {
            continue;
        }
        let fields = match st.engine.archive() {
            Some(a) => match crate::views::schema_of(a, &crate::layout::view_file(&app.id, &t)).await {
                Ok(s) => s
                    .fields()
                    .iter()
                    .map(|f| json!({"name": f.name(), "type": crate::rows::rakam_type(f.data_type())}))
                    .collect(),
                Err(_) => Vec::new(),
            },
            None => Vec::new(),
        };
        out.push(json!({"name": t, "fields": fields}));
    }
    Ok(json_response(Value::from(out).to_string()))
}

/// Mounts the query and materialized-view routes.
pub fn configure(cfg: &mut web::ServiceConfig, state: web::Data<Sql>) {
    cfg.app_data(state)
        .route("/query/execute", web::post().to(execute))
        .route("/query/explain", web::post().to(explain))
        .route("/query/metadata", web::post().to(metadata))
        .route("/materialized-view/create", web::post().to(view_create))
        .route("/materialized-view/delete", web::post().to(view_delete))
        .route("/materialized-view/get", web::post().to(view_get))
        .route("/materialized-view/list", web::post().to(view_list))
        .route("/materialized-view/schema", web::post().to(view_schema));
}
