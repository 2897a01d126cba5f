//! User management, shared by the command line (`tapeflow-web user …`) and the admin API
//! (`/api/users`), and the first admin created on a first start.

use crate::api::ApiError;
use crate::auth::{check_password_policy, generate_password, hash_password, CurrentUser, Role};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_postgres::Client;

/// A refusal explained to the one who asked (CLI or admin).
#[derive(Debug)]
pub enum UserError {
    Invalid(String),
    NotFound(String),
    Conflict(String),
    Other(anyhow::Error),
}

impl std::fmt::Display for UserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UserError::Invalid(m) | UserError::NotFound(m) | UserError::Conflict(m) => f.write_str(m),
            UserError::Other(e) => write!(f, "{e:#}"),
        }
    }
}

impl From<tokio_postgres::Error> for UserError {
    fn from(e: tokio_postgres::Error) -> Self {
        UserError::Other(e.into())
    }
}

impl From<UserError> for ApiError {
    fn from(e: UserError) -> Self {
        match e {
            UserError::Invalid(m) => ApiError(StatusCode::BAD_REQUEST, m),
            UserError::NotFound(m) => ApiError(StatusCode::NOT_FOUND, m),
            UserError::Conflict(m) => ApiError(StatusCode::CONFLICT, m),
            UserError::Other(e) => ApiError::from(e),
        }
    }
}

pub fn check_name(name: &str) -> Result<(), UserError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-'));
    if ok {
        Ok(())
    } else {
        Err(UserError::Invalid(format!("user name {name:?}: 1 to 64 letters, digits, '.', '_', '@' or '-'")))
    }
}

pub fn parse_role(role: &str) -> Result<Role, UserError> {
    Role::parse(role)
        .ok_or_else(|| UserError::Invalid(format!("role {role:?}: expected viewer, trader or admin")))
}

async fn hash(password: String) -> Result<String, UserError> {
    check_password_policy(&password).map_err(UserError::Invalid)?;
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| UserError::Other(e.into()))?
        .map_err(UserError::Other)
}

/// Creates a user; `password` None generates one. Returns the password (given or generated).
pub async fn add(
    client: &Client,
    name: &str,
    role: Role,
    password: Option<String>,
) -> Result<String, UserError> {
    check_name(name)?;
    let password = password.unwrap_or_else(generate_password);
    let hash = hash(password.clone()).await?;
    let n = client
        .execute(
            "INSERT INTO tapeflow.users (name, password_hash, role) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
            &[&name, &hash, &role.as_str()],
        )
        .await?;
    if n == 0 {
        return Err(UserError::Conflict(format!("user {name} already exists")));
    }
    Ok(password)
}

/// Sets a new password (None generates one) and ends the user's sessions.
pub async fn passwd(client: &Client, name: &str, password: Option<String>) -> Result<String, UserError> {
    let password = password.unwrap_or_else(generate_password);
    let hash = hash(password.clone()).await?;
    let n = client
        .execute("UPDATE tapeflow.users SET password_hash = $2 WHERE name = $1", &[&name, &hash])
        .await?;
    if n == 0 {
        return Err(UserError::NotFound(format!("no user {name}")));
    }
    client.execute("DELETE FROM tapeflow.web_sessions WHERE user_name = $1", &[&name]).await?;
    Ok(password)
}

/// Refuses a change that would leave no enabled admin.
async fn keep_an_admin(client: &Client, name: &str) -> Result<(), UserError> {
    let others: i64 = client
        .query_one(
            "SELECT count(*) FROM tapeflow.users WHERE role = 'admin' AND NOT disabled AND name <> $1",
            &[&name],
        )
        .await?
        .get(0);
    let is_admin: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM tapeflow.users WHERE name = $1 AND role = 'admin' AND NOT disabled)",
            &[&name],
        )
        .await?
        .get(0);
    if is_admin && others == 0 {
        return Err(UserError::Conflict(format!("{name} is the last admin: make another admin first")));
    }
    Ok(())
}

pub async fn remove(client: &Client, name: &str) -> Result<(), UserError> {
    keep_an_admin(client, name).await?;
    let n = client.execute("DELETE FROM tapeflow.users WHERE name = $1", &[&name]).await?;
    if n == 0 {
        return Err(UserError::NotFound(format!("no user {name}")));
    }
    Ok(())
}

/// Changes a user's role and/or disables (ending their sessions) or re-enables them.
pub async fn update(
    client: &Client,
    name: &str,
    role: Option<Role>,
    disabled: Option<bool>,
) -> Result<(), UserError> {
    if role.is_some_and(|r| r != Role::Admin) || disabled == Some(true) {
        keep_an_admin(client, name).await?;
    }
    let n = client
        .execute(
            "UPDATE tapeflow.users SET role = coalesce($2, role), disabled = coalesce($3, disabled) WHERE name = $1",
            &[&name, &role.map(Role::as_str), &disabled],
        )
        .await?;
    if n == 0 {
        return Err(UserError::NotFound(format!("no user {name}")));
    }
    if disabled == Some(true) {
        client.execute("DELETE FROM tapeflow.web_sessions WHERE user_name = $1", &[&name]).await?;
    }
    Ok(())
}

pub async fn list(client: &Client) -> Result<Value, UserError> {
    let row = client
        .query_one(
            "SELECT coalesce(json_agg(x ORDER BY x.name), '[]') FROM (
                 SELECT u.name, u.role, u.created_at, u.disabled,
                        (SELECT count(*) FROM tapeflow.web_sessions s WHERE s.user_name = u.name AND s.expires_at > now()) AS sessions,
                        (SELECT max(last_seen) FROM tapeflow.web_sessions s WHERE s.user_name = u.name) AS last_seen
                 FROM tapeflow.users u) x",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// On a first start (no users at all) creates `admin` with a generated password, printed
/// and, when `file` is given, written there with mode 0600.
pub async fn ensure_admin(client: &Client, file: Option<&std::path::Path>) -> anyhow::Result<()> {
    let any: bool = client.query_one("SELECT EXISTS (SELECT 1 FROM tapeflow.users)", &[]).await?.get(0);
    if any {
        return Ok(());
    }
    let password = match add(client, "admin", Role::Admin, None).await {
        Ok(p) => p,
        // Another process made it meanwhile.
        Err(UserError::Conflict(_)) => return Ok(()),
        Err(e) => anyhow::bail!("creating the first admin: {e}"),
    };
    if let Some(file) = file {
        write_secret(file, &password)?;
    }
    println!("No users yet: created user admin with password {password}");
    println!("(change it with `tapeflow-web user passwd admin`; add users with `tapeflow-web user add NAME --role viewer|trader|admin`)");
    tracing::warn!(file = ?file, "created the first admin user; its password is printed above");
    Ok(())
}

fn write_secret(path: &std::path::Path, secret: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    writeln!(f, "{secret}")?;
    Ok(())
}

// ---- the admin API ----

pub async fn api_list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let client = state.db.client().await?;
    Ok(Json(list(&client).await?))
}

#[derive(Deserialize)]
pub struct NewUser {
    name: String,
    role: String,
    password: Option<String>,
}

/// `POST /api/users {name, role, password?}` → `{name, role, password}` (the generated one
/// when none was given).
pub async fn api_add(
    State(state): State<AppState>,
    Extension(admin): Extension<CurrentUser>,
    body: Result<Json<NewUser>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(u) = body?;
    let role = parse_role(&u.role)?;
    let client = state.db.client().await?;
    let generated = u.password.is_none();
    let password = add(&client, &u.name, role, u.password).await?;
    tracing::info!(admin = admin.name, user = u.name, role = role.as_str(), "user added");
    Ok((
        StatusCode::CREATED,
        Json(json!({ "name": u.name, "role": role.as_str(), "password": generated.then_some(password) })),
    ))
}

#[derive(Deserialize)]
pub struct UserChange {
    role: Option<String>,
    disabled: Option<bool>,
    password: Option<String>,
    /// `true`: generate a new password (returned).
    #[serde(default)]
    reset_password: bool,
}

/// `POST /api/users/:name {role?, disabled?, password?, reset_password?}`.
pub async fn api_update(
    State(state): State<AppState>,
    Extension(admin): Extension<CurrentUser>,
    Path(name): Path<String>,
    body: Result<Json<UserChange>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(c) = body?;
    let role = c.role.as_deref().map(parse_role).transpose()?;
    let client = state.db.client().await?;
    update(&client, &name, role, c.disabled).await?;
    let mut password = None;
    if c.password.is_some() || c.reset_password {
        let generated = c.password.is_none();
        let p = passwd(&client, &name, c.password).await?;
        password = generated.then_some(p);
    }
    tracing::info!(admin = admin.name, user = name, "user changed");
    Ok(Json(json!({ "name": name, "password": password })))
}

/// `DELETE /api/users/:name`.
pub async fn api_remove(
    State(state): State<AppState>,
    Extension(admin): Extension<CurrentUser>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let client = state.db.client().await?;
    remove(&client, &name).await?;
    tracing::info!(admin = admin.name, user = name, "user removed");
    Ok(Json(json!({ "removed": name })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_roles_are_checked() {
        assert!(check_name("alice").is_ok());
        assert!(check_name("a.b_c@d-e").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("x y").is_err());
        assert!(check_name(&"a".repeat(65)).is_err());
        assert_eq!(parse_role("trader").unwrap(), Role::Trader);
        assert!(parse_role("root").is_err());
    }
}
