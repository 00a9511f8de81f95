//! The route tables: each dialect declares its resources once, as [`Resource`]s, and the actix
//! routes, each resource's `Allow` value and the list the OpenAPI document is checked against
//! (`prefs_http::routes`) all come from them. A resource answers `OPTIONS` (CORS preflights
//! included) and wrong methods (405) itself.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::DefaultHeaders;
use actix_web::{HttpRequest, HttpResponse, Route, guard, web};

use crate::browser::{ALLOWED_HEADERS, MAX_AGE_SECONDS};
use crate::error::{Dialect, Failure, Problem};
use crate::state::AppState;

/// A method a resource answers besides `OPTIONS`, which every resource answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// `GET`, and `HEAD` with it (actix sends no body for `HEAD`).
    Get,
    /// `POST`.
    Post,
    /// `PUT`.
    Put,
    /// `PATCH`.
    Patch,
    /// `DELETE`.
    Delete,
}

impl Verb {
    /// The method's name, as the OpenAPI document names its operation (in upper case).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
        }
    }

    /// The methods it stands for in `Allow`.
    const fn allowed(self) -> &'static str {
        match self {
            Self::Get => "GET, HEAD",
            other => other.name(),
        }
    }

    /// The actix route that answers it.
    fn route(self) -> Route {
        match self {
            Self::Get => web::route().guard(guard::Any(guard::Get()).or(guard::Head())),
            Self::Post => web::post(),
            Self::Put => web::put(),
            Self::Patch => web::patch(),
            Self::Delete => web::delete(),
        }
    }
}

/// Puts a method's handler on its route: `|route| route.to(handler)`.
pub(crate) type Handler = fn(Route) -> Route;

/// One resource of a route table: its path, the handler of each method it answers, and so its
/// `Allow` value.
#[derive(Clone, Copy)]
pub struct Resource {
    /// The path as the OpenAPI document spells it (`/preferences/{client_id}`).
    pub path: &'static str,
    /// Whether the OpenAPI document lists it (an alias of a documented path is not listed).
    pub documented: bool,
    methods: &'static [(Verb, Handler)],
    allow: Allow,
}

impl Resource {
    /// A documented resource answering `methods`, in that order in `Allow`.
    pub(crate) const fn new(path: &'static str, methods: &'static [(Verb, Handler)]) -> Self {
        Self { path, documented: true, methods, allow: Allow::of(methods) }
    }

    /// An alias the OpenAPI document does not list: the operations of a documented path, served at
    /// another.
    pub(crate) const fn alias(path: &'static str, methods: &'static [(Verb, Handler)]) -> Self {
        Self { documented: false, ..Self::new(path, methods) }
    }

    /// The methods it answers besides `HEAD` and `OPTIONS`.
    pub fn methods(&self) -> impl Iterator<Item = Verb> {
        self.methods.iter().map(|(verb, _)| *verb)
    }

    /// Its `Allow` value: its methods, `HEAD` after `GET`, and `OPTIONS`.
    pub const fn allow(&self) -> &str {
        self.allow.as_str()
    }

    /// The actix resource at `pattern` (the router's spelling of [`Self::path`]) with the errors
    /// of dialect `D`: every method on its handler, `OPTIONS`, 405 otherwise, `Allow` always.
    pub(crate) fn service<D: Dialect>(
        &'static self,
        pattern: impl Into<String>,
    ) -> actix_web::Resource<
        impl ServiceFactory<
            ServiceRequest,
            Config = (),
            Response = ServiceResponse<impl MessageBody>,
            Error = actix_web::Error,
            InitError = (),
        >,
    > {
        self.methods.iter().fold(resource::<D>(pattern, self.allow()), |resource, (verb, handler)| {
            resource.route(handler(verb.route()))
        })
    }
}

/// Registers every resource of `table` at its path, with the errors of dialect `D`.
pub(crate) fn register<D: Dialect>(cfg: &mut web::ServiceConfig, table: &'static [Resource]) {
    for entry in table {
        cfg.service(entry.service::<D>(entry.path));
    }
}

/// How many resources `tables` hold.
pub(crate) const fn count(tables: &[&[Resource]]) -> usize {
    let (mut count, mut i) = (0, 0);
    while i < tables.len() {
        count += tables[i].len();
        i += 1;
    }
    count
}

/// Every resource of `tables` (`N` of them, [`count`]) as `(path, Allow value)`.
pub(crate) const fn allow_list<const N: usize>(
    tables: &'static [&'static [Resource]],
) -> [(&'static str, &'static str); N] {
    let mut list = [("", ""); N];
    let (mut i, mut n) = (0, 0);
    while i < tables.len() {
        let mut j = 0;
        while j < tables[i].len() {
            let entry = &tables[i][j];
            list[n] = (entry.path, entry.allow());
            (j, n) = (j + 1, n + 1);
        }
        i += 1;
    }
    list
}

/// Room for the longest `Allow` value: every method.
const ALLOW_BYTES: usize = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS".len();

/// An `Allow` value, written when the route table is compiled.
#[derive(Clone, Copy)]
struct Allow {
    bytes: [u8; ALLOW_BYTES],
    len: usize,
}

impl Allow {
    /// `methods` in their order, then `OPTIONS`.
    const fn of(methods: &[(Verb, Handler)]) -> Self {
        let mut allow = Self { bytes: [0; ALLOW_BYTES], len: 0 };
        let mut i = 0;
        while i < methods.len() {
            allow = allow.push(methods[i].0.allowed()).push(", ");
            i += 1;
        }
        allow.push("OPTIONS")
    }

    /// With `text` appended.
    const fn push(mut self, text: &str) -> Self {
        let text = text.as_bytes();
        let mut i = 0;
        while i < text.len() {
            self.bytes[self.len] = text[i];
            (self.len, i) = (self.len + 1, i + 1);
        }
        self
    }

    /// The value.
    const fn as_str(&self) -> &str {
        match std::str::from_utf8(self.bytes.split_at(self.len).0) {
            Ok(text) => text,
            Err(_) => panic!("method names are ASCII"),
        }
    }
}

/// A resource of dialect `D` that answers `OPTIONS` (CORS preflights included) and wrong methods
/// (405) itself, and sends `Allow` on every response. `allow` lists the methods the caller
/// registers, plus `OPTIONS`.
fn resource<D: Dialect>(
    path: impl Into<String>,
    allow: &'static str,
) -> actix_web::Resource<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    web::resource(path.into())
        .wrap(DefaultHeaders::new().add((header::ALLOW, allow)))
        .route(web::route().method(Method::OPTIONS).to(move |req: HttpRequest| options(req, allow)))
        .default_service(web::to(move || async move {
            Err::<HttpResponse, _>(Failure::<D>::from(Problem::MethodNotAllowed(allow)))
        }))
}

/// `OPTIONS` on a resource that answers `allow`: 204 with `Allow`; for a preflight from an
/// origin CORS allows, also the resource's methods, the headers a page may send and how long to
/// remember it (the CORS middleware adds the origin, credentials and `Vary`).
async fn options(req: HttpRequest, allow: &'static str) -> HttpResponse {
    let mut response = HttpResponse::NoContent();
    let preflight = req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let origin = req.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok());
    let config = req.app_data::<web::Data<AppState>>().map(|state| &state.browser);
    if let (true, Some(origin), Some(config)) = (preflight, origin, config)
        && config.cors_allows(origin)
    {
        response
            .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, allow))
            .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOWED_HEADERS))
            .insert_header((header::ACCESS_CONTROL_MAX_AGE, MAX_AGE_SECONDS));
    }
    response.finish()
}
