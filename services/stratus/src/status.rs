//! `stratus status`: asks a running API process for `GET /v1/status` (admin) and prints
//! one line per reactor and background task, or the raw document with `--json`.
//!
//! The token is `--token` / `OS_TOKEN`; without one, the `OS_*` variables of an openrc
//! (`OS_AUTH_URL`, `OS_USERNAME`, `OS_PASSWORD`, `OS_PROJECT_NAME`) get one from the
//! identity API, as the openstack CLI would. Plain HTTP only (reqwest is built without
//! TLS here).

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

/// Where to ask and as whom.
#[derive(Debug, Clone)]
pub struct StatusOptions {
    /// Base URL of the compute API (`http://127.0.0.1:8774`).
    pub url: String,
    /// A token (Keystone, or `user:project:admin` with `--auth noauth`).
    pub token: Option<String>,
}

/// The `GET /v1/status` document.
pub async fn fetch(opts: &StatusOptions) -> anyhow::Result<Value> {
    let http = reqwest::Client::new();
    let token = match &opts.token {
        Some(t) => t.clone(),
        None => keystone_token(&http).await?,
    };
    let url = format!("{}/v1/status", opts.url.trim_end_matches('/'));
    let r = http
        .get(&url)
        .header("X-Auth-Token", token)
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let code = r.status();
    let text = r.text().await.context("cannot read the answer")?;
    match code.as_u16() {
        200 => serde_json::from_str(&text).with_context(|| format!("{url} answered: {text}")),
        401 => bail!("{url}: the token was refused (401): get a new one"),
        403 => bail!("{url}: the status is for admins only (403): use an admin's credentials"),
        _ => bail!("{url} answered {code}: {text}"),
    }
}

/// A token from the identity API, with the password credentials of an openrc.
pub async fn keystone_token(http: &reqwest::Client) -> anyhow::Result<String> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let (Some(auth_url), Some(user), Some(password)) =
        (var("OS_AUTH_URL"), var("OS_USERNAME"), var("OS_PASSWORD"))
    else {
        bail!("no credentials: pass --token (or OS_TOKEN), or source the openrc of the data directory")
    };
    let project = var("OS_PROJECT_NAME").unwrap_or_else(|| "admin".into());
    let user_domain = var("OS_USER_DOMAIN_NAME").unwrap_or_else(|| "Default".into());
    let project_domain = var("OS_PROJECT_DOMAIN_NAME").unwrap_or_else(|| "Default".into());
    let body = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"name": user_domain}, "password": password}}},
        "scope": {"project": {"name": project, "domain": {"name": project_domain}}}
    }});
    let url = format!("{}/auth/tokens", auth_url.trim_end_matches('/'));
    let r = http
        .post(&url)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("cannot reach the identity API at {url}"))?;
    if !r.status().is_success() {
        bail!(
            "the identity API refused the OS_* credentials ({})",
            r.status()
        );
    }
    r.headers()
        .get("x-subject-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .context("the identity API answered without a token")
}

/// The notifier's source streams as rows (`notifier@<stream>`, kind `notifier`): runs
/// are the notifications written, last run the last write.
fn notifier_rows(doc: &Value) -> Vec<[String; 7]> {
    let streams = doc["notifier"]["streams"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    streams
        .iter()
        .map(|t| {
            let num = |k: &str| t[k].as_u64().map_or("-".into(), |n| n.to_string());
            let error = t["last_error"].as_str().unwrap_or("-");
            [
                format!("notifier@{}", t["stream"].as_str().unwrap_or("?")),
                "notifier".to_string(),
                num("lag"),
                num("written"),
                num("errors"),
                t["last_write"].as_str().unwrap_or("never").to_string(),
                if t["stopped"] == true {
                    format!("stopped: {error}")
                } else {
                    error.to_string()
                },
            ]
        })
        .collect()
}

/// One line per task, under a header: where it runs, its lag, runs, errors, last run
/// and last error; then one per source stream of the notifier.
pub fn render(doc: &Value) -> String {
    let tasks = doc["tasks"].as_array().cloned().unwrap_or_default();
    let rows: Vec<[String; 7]> = tasks
        .iter()
        .map(|t| {
            let name = t["name"].as_str().unwrap_or("?");
            let task = match t["stream"].as_str() {
                Some(s) => format!("{name}@{s}"),
                None => name.to_string(),
            };
            let num = |k: &str| t[k].as_u64().map_or("-".into(), |n| n.to_string());
            [
                task,
                t["kind"].as_str().unwrap_or("?").to_string(),
                num("lag"),
                num("runs"),
                num("errors"),
                t["last_run"].as_str().unwrap_or("never").to_string(),
                t["last_error"].as_str().unwrap_or("-").to_string(),
            ]
        })
        .chain(notifier_rows(doc))
        .collect();
    let header = [
        "TASK",
        "KIND",
        "LAG",
        "RUNS",
        "ERRORS",
        "LAST RUN",
        "LAST ERROR",
    ]
    .map(str::to_string);
    let mut width = [0usize; 6];
    for r in std::iter::once(&header).chain(&rows) {
        for (w, c) in width.iter_mut().zip(r.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in std::iter::once(&header).chain(&rows) {
        let line = format!(
            "{:<w0$}  {:<w1$}  {:>w2$}  {:>w3$}  {:>w4$}  {:<w5$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            r[5],
            r[6],
            w0 = width[0],
            w1 = width[1],
            w2 = width[2],
            w3 = width[3],
            w4 = width[4],
            w5 = width[5],
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_task_under_a_header() {
        let doc = json!({"tasks": [
            {"name": "scheduler", "kind": "reactor", "stream": "cell1", "every_ms": 30000,
             "runs": 12, "errors": 0, "last_run": "2026-12-03T17:00:00.000000Z",
             "last_error": null, "position": 10, "head": 12, "lag": 2},
            {"name": "cell-probe", "kind": "periodic", "stream": null, "every_ms": 1000,
             "runs": 3, "errors": 1, "last_run": null, "last_error": "unreachable",
             "position": null, "head": null, "lag": null}
        ], "notifier": {"written": 7, "streams": [
            {"stream": "cell1", "position": 9, "head": 12, "lag": 3, "written": 7,
             "errors": 1, "last_error": "cannot decode", "last_write": null, "stopped": true}
        ]}});
        let text = render(&doc);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(
            lines[3].split_whitespace().take(3).collect::<Vec<_>>()
                == ["notifier@cell1", "notifier", "3"]
                && lines[3].ends_with("stopped: cannot decode"),
            "{text}"
        );
        assert!(lines[0].starts_with("TASK"));
        assert!(lines[1].starts_with("scheduler@cell1  reactor"), "{text}");
        assert!(
            lines[1].contains(" 2 ") && lines[1].ends_with('-'),
            "{text}"
        );
        assert!(
            lines[2].contains("never") && lines[2].ends_with("unreachable"),
            "{text}"
        );
    }
}
