//! Throwaway Postgres databases on the test server.

use sqlx::Connection;

/// Name of the env var that points tests at a Postgres server (set by scripts/test.sh).
pub const ENV: &str = "CRONHOOK_TEST_DATABASE_URL";

/// Returns the server URL from [`ENV`], or panics with how to get one: a test that needs
/// Postgres must fail, never pass silently, when there is none.
pub fn server_url() -> String {
    match std::env::var(ENV) {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "{ENV} is not set: this test needs a Postgres server. Run the tests with scripts/test.sh \
             (it starts a throwaway Postgres 15), or export {ENV}=postgres://user@host:port/postgres"
        ),
    }
}

/// Creates an empty database on the test server and returns its URL.
pub async fn fresh_database_url() -> anyhow::Result<String> {
    let server = server_url();
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&server).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await?;
    conn.close().await?;
    Ok(replace_database(&server, &name))
}

fn replace_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    // postgres://user@host:port/dbname -> keep everything up to the path
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let base = match base[after_scheme..].find('/') {
        Some(slash) => &base[..after_scheme + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn replaces_the_database() {
        assert_eq!(super::replace_database("postgres://u@h:5/postgres", "x"), "postgres://u@h:5/x");
        assert_eq!(super::replace_database("postgres://u@h:5", "x"), "postgres://u@h:5/x");
        assert_eq!(
            super::replace_database("postgres://u@h:5/p?sslmode=disable", "x"),
            "postgres://u@h:5/x?sslmode=disable"
        );
    }
}
