//! Rakam's query API: `/query/execute`, `/query/explain`, `/query/metadata`, with the
//! read key (or the master key) of the project whose tables the query reads.

use crate::sql::{Answer, Engine, Mode, Outcome, QueryError};
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

/// Mounts the query routes.
pub fn configure(cfg: &mut web::ServiceConfig, state: web::Data<Sql>) {
    cfg.app_data(state)
        .route("/query/execute", web::post().to(execute))
        .route("/query/explain", web::post().to(explain))
        .route("/query/metadata", web::post().to(metadata));
}
