//! The framework ceiling of the prefs benchmark: the least an actix-web server must do for one of
//! prefs' requests. It verifies the bearer token exactly as prefs does (HS256, `exp` and `sub`
//! required, `nbf` checked, 60 s leeway, the claims deserialized into owned fields), reads the
//! request body, and answers a fixed body of the configured size with the configured status.
//! No database, no routing, no middleware: whatever prefs measures below this is prefs' own cost.
//!
//! ```text
//! prefs-ceiling --bind 127.0.0.1:18081 --status 200 --body-bytes 312
//! ```
//! The secret comes from `PREFS_JWT_SECRET`, as for prefs. Workers: one per usable core (as prefs).

use actix_web::http::{StatusCode, header};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// The claims prefs reads from a token; owned, as prefs deserializes them.
#[derive(Deserialize)]
#[allow(dead_code)] // read to cost what prefs pays, never used
struct Claims {
    sub: String,
    #[serde(default)]
    preferred_username: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    azp: Option<String>,
    exp: u64,
}

struct State {
    key: DecodingKey,
    validation: Validation,
    status: StatusCode,
    body: web::Bytes,
}

/// Every request: the token verified (401 otherwise), the body read, the fixed answer.
async fn answer(req: HttpRequest, _body: web::Bytes, state: web::Data<State>) -> HttpResponse {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let verified =
        token.is_some_and(|t| jsonwebtoken::decode::<Claims>(t, &state.key, &state.validation).is_ok());
    if !verified {
        return HttpResponse::Unauthorized().finish();
    }
    let mut response = HttpResponse::build(state.status);
    if state.body.is_empty() {
        response.finish()
    } else {
        response.content_type("application/json").body(state.body.clone())
    }
}

/// A JSON object of exactly `size` bytes (at least 10), or nothing for 0.
fn body_of(size: usize) -> Vec<u8> {
    if size == 0 {
        return Vec::new();
    }
    let size = size.max(10);
    let mut body = b"{\"pad\":\"".to_vec();
    body.resize(size - 2, b'x');
    body.extend_from_slice(b"\"}");
    body
}

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_owned())
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let bind = arg(&args, "--bind", "127.0.0.1:18081");
    let status: u16 = arg(&args, "--status", "200").parse().expect("--status: an HTTP status");
    let size: usize = arg(&args, "--body-bytes", "0").parse().expect("--body-bytes: a size");
    let secret = std::env::var("PREFS_JWT_SECRET").expect("PREFS_JWT_SECRET must be set");

    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "sub"]);
    validation.leeway = 60;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.validate_aud = false;
    let state = web::Data::new(State {
        key: DecodingKey::from_secret(secret.as_bytes()),
        validation,
        status: StatusCode::from_u16(status).expect("--status: an HTTP status"),
        body: web::Bytes::from(body_of(size)),
    });
    HttpServer::new(move || App::new().app_data(state.clone()).default_service(web::to(answer)))
        .bind(&bind)?
        .run()
        .await
}
