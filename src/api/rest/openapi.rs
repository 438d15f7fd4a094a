//! The OpenAPI 3.1 document of the REST API, made from the handlers' own
//! annotations and types; served at `/api/v1/openapi.json` and kept in the
//! repository as `docs/openapi.json` (a test fails when the two differ:
//! `ROLLPOINT_WRITE_OPENAPI=1 cargo test --lib openapi` rewrites it).

use utoipa::OpenApi;

use super::{groups, handlers, tokens};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "rollpoint REST API",
        description = "The page's REST/JSON calls beside gRPC, on the same listeners: the Unix socket (peer credentials) and TCP (Authorization: Bearer <token>). The loopback run listener serves only POST/GET .../containers/{id}/snapshots and GET .../snapshots/{name} to the command of a schedule entry, through its $SNAP_URL (HTTP Basic with the run's credential)."
    ),
    paths(
        handlers::healthz,
        handlers::metrics,
        handlers::register_container,
        handlers::list_containers,
        handlers::get_container,
        handlers::patch_container,
        handlers::prune_snapshots,
        handlers::unregister_container,
        handlers::create_snapshot,
        handlers::list_snapshots,
        handlers::get_snapshot,
        handlers::delete_snapshot,
        handlers::patch_snapshot,
        handlers::events,
        handlers::create_entry,
        handlers::list_entries,
        handlers::get_entry,
        handlers::update_entry,
        handlers::delete_entry,
        handlers::run_entry,
        handlers::create_container_entry,
        handlers::list_container_entries,
        handlers::diff_snapshots,
        handlers::restore_files,
        handlers::status,
        groups::put_group,
        groups::get_group,
        groups::list_groups,
        groups::delete_group,
        groups::create_group_snapshot,
        groups::restore_group,
        tokens::create_token,
        tokens::list_tokens,
        tokens::revoke_token,
    )
)]
struct ApiDoc;

/// The document as pretty JSON.
pub fn document() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_else(|error| format!("{{\"error\": \"{error}\"}}"))
}

#[cfg(test)]
mod tests {
    const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");

    #[test]
    fn the_committed_openapi_document_is_the_generated_one() {
        let generated = super::document() + "\n";
        if std::env::var_os("ROLLPOINT_WRITE_OPENAPI").is_some() {
            std::fs::write(COMMITTED, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/openapi.json is out of date: ROLLPOINT_WRITE_OPENAPI=1 cargo test --lib openapi rewrites it"
        );
    }
}
