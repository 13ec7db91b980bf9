//! Routes as data: each module lists its endpoints (method, path, handler) and the
//! server mounts that list, so the list is the router. Tests walk it (every HTML page
//! must carry the security headers, every route must be in `openapi.json`), and a new
//! route cannot escape them.

use actix_web::http::Method;
use actix_web::{web, FromRequest, Handler, Responder};

/// One route: what it answers, and the handler mounted for it.
pub struct Endpoint {
    pub method: Method,
    /// Relative to the scope the list is mounted in ("" for none).
    pub path: &'static str,
    route: actix_web::Route,
}

/// `handler` for `method` requests to `path`.
pub fn endpoint<F, Args>(method: Method, path: &'static str, handler: F) -> Endpoint
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    Endpoint {
        route: web::method(method.clone()).to(handler),
        method,
        path,
    }
}

/// Mounts `endpoints` on `cfg` (a scope's or the app's).
pub fn mount(cfg: &mut web::ServiceConfig, endpoints: Vec<Endpoint>) {
    for e in endpoints {
        cfg.route(e.path, e.route);
    }
}

/// Mounts `endpoints` in `scope` (paths relative to it).
pub fn mount_scope(mut scope: actix_web::Scope, endpoints: Vec<Endpoint>) -> actix_web::Scope {
    for e in endpoints {
        scope = scope.route(e.path, e.route);
    }
    scope
}

/// The method and full path of each of `endpoints`, mounted under `prefix`.
pub fn listed(prefix: &str, endpoints: Vec<Endpoint>) -> Vec<(Method, String)> {
    endpoints
        .into_iter()
        .map(|e| (e.method, format!("{prefix}{}", e.path)))
        .collect()
}
