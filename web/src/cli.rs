//! `tapeflow-web user add|passwd|remove|list`: user management from the command line,
//! against `DATABASE_URL`.

use crate::users::{self, parse_role};
use std::io::BufRead;

pub const USAGE: &str = "usage:
  tapeflow-web                                   serve the dashboard (TAPEFLOW_WEB_ADDR)
  tapeflow-web user add NAME --role viewer|trader|admin [--password-stdin]
  tapeflow-web user passwd NAME [--password-stdin]
  tapeflow-web user remove NAME
  tapeflow-web user list
Without --password-stdin a password is generated and printed; with it, the first line of
standard input is the password.";

fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let p = line.trim_end_matches(['\r', '\n']).to_string();
    anyhow::ensure!(!p.is_empty(), "no password on standard input");
    Ok(p)
}

/// Runs `user …` (the arguments after `user`); returns the process exit code.
pub async fn user(args: &[String]) -> anyhow::Result<i32> {
    let mut positional = Vec::new();
    let mut role = None;
    let mut from_stdin = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--role" => {
                role = Some(it.next().ok_or_else(|| anyhow::anyhow!("--role needs a value"))?.clone())
            }
            "--password-stdin" => from_stdin = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(0);
            }
            s if s.starts_with("--role=") => role = Some(s["--role=".len()..].to_string()),
            s if s.starts_with('-') => anyhow::bail!("unknown option {s}\n{USAGE}"),
            s => positional.push(s.to_string()),
        }
    }
    let url = tapeflow_db::database_url();
    let client = tapeflow_db::connect(&url, std::time::Duration::from_secs(10)).await?;
    let password = || if from_stdin { read_password().map(Some) } else { Ok(None) };
    let done = match (positional.first().map(String::as_str), positional.get(1), positional.len()) {
        (Some("add"), Some(name), 2) => {
            let role = role.ok_or_else(|| anyhow::anyhow!("user add needs --role viewer|trader|admin"))?;
            let role = parse_role(&role).map_err(|e| anyhow::anyhow!("{e}"))?;
            let given = password()?;
            let generated = given.is_none();
            match users::add(&client, name, role, given).await {
                Ok(p) => {
                    if generated {
                        println!("created {} user {name} with password {p}", role.as_str());
                    } else {
                        println!("created {} user {name}", role.as_str());
                    }
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
        (Some("passwd"), Some(name), 2) => {
            let given = password()?;
            let generated = given.is_none();
            users::passwd(&client, name, given).await.map(|p| {
                if generated {
                    println!("new password of {name}: {p} (their sessions were ended)");
                } else {
                    println!("password of {name} changed (their sessions were ended)");
                }
            })
        }
        (Some("remove"), Some(name), 2) => {
            users::remove(&client, name).await.map(|()| println!("removed user {name}"))
        }
        (Some("list"), None, 1) => users::list(&client).await.map(|v| {
            for u in v.as_array().into_iter().flatten() {
                println!(
                    "{:<24} {:<7} {}{}",
                    u["name"].as_str().unwrap_or(""),
                    u["role"].as_str().unwrap_or(""),
                    u["created_at"].as_str().unwrap_or(""),
                    if u["disabled"] == true { "  (disabled)" } else { "" }
                );
            }
        }),
        _ => {
            eprintln!("{USAGE}");
            return Ok(2);
        }
    };
    match done {
        Ok(()) => Ok(0),
        Err(e) => {
            eprintln!("tapeflow-web user: {e}");
            Ok(1)
        }
    }
}
