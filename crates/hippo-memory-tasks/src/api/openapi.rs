//! The OpenAPI document, derived from the handlers' annotations and the wire types.

use utoipa::OpenApi;

use super::routes::{health, memories, migrations, rules, tasks};

/// The document's root: every path, their schemas are collected from the types.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "hippo-queue memory tasks API",
        description = "HippocampAI's background memory tasks on hippo-queue: submit tasks, follow and cancel them, embedding migrations, procedural rules and memories. Errors are `{\"error\": \"what is wrong\"}`."
    ),
    paths(
        tasks::submit_deduplication,
        tasks::submit_consolidation,
        tasks::submit_health_check,
        tasks::submit_summarization,
        tasks::submit_compression,
        tasks::submit_expiration,
        tasks::task_status,
        tasks::revoke_task,
        migrations::start_migration,
        migrations::get_migration,
        migrations::cancel_migration,
        rules::consolidate_rules,
        rules::add_rule,
        rules::list_rules,
        memories::add_memory,
        memories::list_memories,
        memories::get_memory,
        memories::delete_memory,
        health::health,
        health::openapi_json,
    )
)]
struct ApiDoc;

/// The OpenAPI 3.1 document of [`router`](super::router), with this crate's version.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    doc
}
