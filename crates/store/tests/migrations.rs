//! Migrations that rewrite rows: a database at the migration before is filled the way the
//! code of that time wrote it, then opened by today's store.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use cronhook_core::{ProjectId, RunId, TickId};
use cronhook_store::Error;
use uuid::Uuid;

/// The last migration before run ids became tick ids.
const BEFORE_RUN_ID_IS_TICK_ID: i64 = 14;

/// Two runs begun before migration 0015, with ids of their own and one attempt each: as
/// `(tick id, old run id)`.
fn old_runs() -> [(Uuid, Uuid); 2] {
    [(Uuid::new_v4(), Uuid::now_v7()), (Uuid::new_v4(), Uuid::now_v7())]
}

/// What the store must show of them once migrated: each run under its tick's id, with its
/// attempt, and nothing under the old id.
async fn assert_runs_moved_to_tick_ids(stores: &cronhook_store::Stores, runs: &[(Uuid, Uuid)]) {
    let project = ProjectId::default_project();
    for (tick, old) in runs {
        let id = RunId::of_tick(TickId::from_uuid(*tick));
        let (run, attempts) = stores.runs.get_run(&project, id).await.unwrap();
        assert_eq!((run.id, run.tick_id.as_uuid()), (id, tick));
        assert_eq!(attempts.len(), 1, "the attempt follows its run");
        assert_eq!(attempts[0].run_id, id);
        let gone = stores.runs.get_run(&project, RunId::from_uuid(*old)).await;
        assert!(matches!(gone, Err(Error::NotFound(_))), "{gone:?}");
    }
}

#[tokio::test]
async fn postgres_runs_take_their_tick_ids() {
    let url = cronhook_test_utils::postgres::fresh_database_url().await.unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::migrate!("./migrations/postgres").run_to(BEFORE_RUN_ID_IS_TICK_ID, &pool).await.unwrap();
    let runs = old_runs();
    for (tick, run) in &runs {
        sqlx::query(
            "INSERT INTO runs (project_id, id, tick_id, schedule_id, nominal_time, schedule_version, trigger, status, \
             created_at, finished_at) VALUES ('default', $1, $2, $3, now(), 1, 'scheduled', 'succeeded', now(), now())",
        )
        .bind(run)
        .bind(tick)
        .bind(Uuid::now_v7())
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO attempts (project_id, run_id, number, started_at, duration_ms, method, url, request_headers, \
             request_body_size, request_body_sha256, response_status, response_headers, response_body, \
             response_body_truncated, lateness_ms) VALUES ('default', $1, 1, now(), 3, 'POST', 'http://127.0.0.1/', \
             '[]', 0, '', 200, '[]', ''::bytea, false, 1)",
        )
        .bind(run)
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;
    let stores = cronhook_store::open(&url, 4).await.unwrap();
    assert_runs_moved_to_tick_ids(&stores, &runs).await;
}

#[tokio::test]
async fn sqlite_runs_take_their_tick_ids() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(&path).create_if_missing(true).foreign_keys(true);
    let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
    sqlx::migrate!("./migrations/sqlite").run_to(BEFORE_RUN_ID_IS_TICK_ID, &pool).await.unwrap();
    let runs = old_runs();
    for (tick, run) in &runs {
        sqlx::query(
            "INSERT INTO runs (project_id, id, tick_id, schedule_id, nominal_time, schedule_version, trigger, status, \
             created_at, finished_at) VALUES ('default', ?1, ?2, ?3, 1000, 1, 'scheduled', 'succeeded', 1000, 2000)",
        )
        .bind(run.to_string())
        .bind(tick.to_string())
        .bind(Uuid::now_v7().to_string())
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO attempts (project_id, run_id, number, started_at, duration_ms, method, url, request_headers, \
             request_body_size, request_body_sha256, response_status, response_headers, response_body, \
             response_body_truncated, lateness_ms) VALUES ('default', ?1, 1, 1500, 3, 'POST', 'http://127.0.0.1/', \
             '[]', 0, '', 200, '[]', x'', 0, 1)",
        )
        .bind(run.to_string())
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;
    let stores = cronhook_store::open(path.to_str().unwrap(), 4).await.unwrap();
    assert_runs_moved_to_tick_ids(&stores, &runs).await;
}
