//! Where the database is: `DATABASE_URL`, else the project's own cluster.

/// The project cluster's port unless `TAPEFLOW_PGPORT` says otherwise (see scripts/cluster.sh).
pub const DEFAULT_PORT: u16 = 5433;

/// `DATABASE_URL` if set, else the project-local cluster on `TAPEFLOW_PGPORT` (5433).
pub fn database_url() -> String {
    if let Ok(url) = std::env::var("DATABASE_URL") {
        if !url.is_empty() {
            return url;
        }
    }
    let port = std::env::var("TAPEFLOW_PGPORT").ok().and_then(|p| p.parse().ok()).unwrap_or(DEFAULT_PORT);
    format!("postgresql://postgres@127.0.0.1:{port}/tapeflow")
}

/// An environment variable parsed as `T` (trimmed); `None` when unset or empty, an error naming the
/// variable and its value when it does not parse.
pub fn env_parse<T: std::str::FromStr>(name: &str) -> anyhow::Result<Option<T>>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => {
            v.trim().parse::<T>().map(Some).map_err(|e| anyhow::anyhow!("{name}={v:?} is invalid: {e}"))
        }
        _ => Ok(None),
    }
}

/// [`env_parse`] with a default for an unset or empty variable.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    Ok(env_parse(name)?.unwrap_or(default))
}

/// An environment variable as a string; `None` when unset or empty.
pub fn env_string(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Settings read through a variable lookup (the environment, or a map in tests): values are
/// trimmed, an empty one counts as unset, and every error names the variable and its value.
pub struct Vars<F>(pub F);

impl<F: Fn(&str) -> Option<String>> Vars<F> {
    pub fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
    }

    /// A whole number, `default` when unset.
    pub fn u64(&self, name: &str, default: u64) -> anyhow::Result<u64> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v.parse::<u64>().map_err(|_| anyhow::anyhow!("{name}={v:?} is not a whole number")),
        }
    }

    /// A switch: true/1/yes/on or false/0/no/off (any case), `default` when unset.
    pub fn flag(&self, name: &str, default: bool) -> anyhow::Result<bool> {
        match self.get(name).map(|v| v.to_ascii_lowercase()).as_deref() {
            None => Ok(default),
            Some("true" | "1" | "yes" | "on") => Ok(true),
            Some("false" | "0" | "no" | "off") => Ok(false),
            Some(other) => anyhow::bail!("{name}={other:?}: expected true or false (on or off)"),
        }
    }
}

/// A fixed variable lookup, for configuration tests: the given pairs, nothing else.
pub fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: std::collections::HashMap<String, String> =
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |name| map.get(name).cloned()
}

#[cfg(test)]
mod tests {
    use super::Vars;

    #[test]
    fn vars_trim_default_and_name_the_variable() {
        let v = Vars(|name: &str| match name {
            "N" => Some(" 42 ".to_string()),
            "EMPTY" => Some("  ".to_string()),
            "BAD" => Some("x".to_string()),
            "ON" => Some("On".to_string()),
            _ => None,
        });
        assert_eq!(v.get("N").as_deref(), Some("42"));
        assert_eq!(v.get("EMPTY"), None);
        assert_eq!(v.u64("N", 7).unwrap(), 42);
        assert_eq!(v.u64("UNSET", 7).unwrap(), 7);
        assert!(v.u64("BAD", 7).unwrap_err().to_string().starts_with("BAD=\"x\""));
        assert!(v.flag("ON", false).unwrap());
        assert!(!v.flag("UNSET", false).unwrap());
        assert!(v.flag("BAD", false).unwrap_err().to_string().contains("expected true or false"));
    }
}
