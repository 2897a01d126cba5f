//! The README is a test: every ```sql block of README.md runs in psql against a database with
//! the schema migrated and a fixture loaded, and the ```output block shown after it (if any)
//! must be what psql prints.
//!
//! Conventions (also described in the README's "SQL API" section):
//!
//! * A ```sql block runs as one psql script in its own transaction, rolled back afterwards, so
//!   blocks do not see each other's changes; the blocks of one fixture share a database and run
//!   in document order. Every `tapeflow` sequence is set to follow its table's largest value
//!   before each block, so ids do not depend on the blocks before it.
//! * A ```output block that follows a ```sql block (blank lines between them allowed) is what
//!   psql prints for the whole block (result tables with their `(N rows)` footer, command tags
//!   such as `UPDATE 1`). Compared after normalising psql's alignment only: cells are trimmed
//!   and `---+---` rules may have any length. Without an output block the block must still run
//!   without error.
//! * psql runs with `TimeZone = UTC`, `extra_float_digits = 0` (15 significant digits, as
//!   before PostgreSQL 12), serial plans and NOTICEs off; psql variables work (`\gset`).
//! * An HTML comment just before a ```sql block (blank lines between allowed) sets options:
//!   `<!-- sql-doctest: fixture=empty -->` runs it against a database with the schema only
//!   (default `fixture=market`: `tests/fixtures/readme.sql`); `commit` keeps its changes for
//!   the blocks after it; `error` expects it to end with an error, shown in the output as psql
//!   prints it (`ERROR:  …` and any `DETAIL:`/`HINT:` lines); `no-run: <reason>` skips it, and
//!   the reason is required.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::process::{Command, Stdio};
use tapeflow_tests::{repo_root, TestDb};

/// Options of one block, from its `<!-- sql-doctest: … -->` comment.
#[derive(Debug, Clone, PartialEq, Default)]
struct Options {
    fixture: Option<String>,
    commit: bool,
    error: bool,
    no_run: Option<String>,
}

/// A ```sql block and the output shown after it.
#[derive(Debug, Clone, PartialEq)]
struct Example {
    /// 1-based line of the opening fence.
    line: usize,
    sql: String,
    output: Option<String>,
    options: Options,
}

const MARKER: &str = "sql-doctest:";

fn parse_options(comment: &str, line: usize) -> Result<Options, String> {
    let body = comment.trim().trim_start_matches("<!--").trim_end_matches("-->").trim();
    let body =
        body.strip_prefix(MARKER).ok_or_else(|| format!("line {line}: not a {MARKER} comment"))?.trim();
    let mut o = Options::default();
    if let Some(reason) = body.strip_prefix("no-run") {
        let reason = reason.trim_start().strip_prefix(':').unwrap_or(reason).trim();
        if reason.is_empty() {
            return Err(format!("line {line}: no-run needs a reason (`no-run: why it cannot run`)"));
        }
        o.no_run = Some(reason.to_string());
        return Ok(o);
    }
    for word in body.split_whitespace() {
        match word {
            "commit" => o.commit = true,
            "error" => o.error = true,
            w if w.starts_with("fixture=") => o.fixture = Some(w["fixture=".len()..].to_string()),
            w => {
                return Err(format!(
                "line {line}: unknown {MARKER} option {w:?} (fixture=NAME, commit, error, no-run: reason)"
            ))
            }
        }
    }
    Ok(o)
}

/// The fenced blocks of a Markdown text: `(line of the opening fence, info word, body)`, the
/// body without the fence's indentation. Tildes and longer fences are not used in the README.
fn fences(text: &str) -> Result<Vec<(usize, String, String, usize)>, String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        let indent = l.len() - l.trim_start().len();
        if let Some(info) = l.trim_start().strip_prefix("```") {
            let info = info.split_whitespace().next().unwrap_or("").to_ascii_lowercase();
            let start = i;
            let mut body = String::new();
            i += 1;
            while i < lines.len() && lines[i].trim() != "```" {
                let b = lines[i];
                let cut = b.len() - b.trim_start().len();
                body.push_str(&b[cut.min(indent)..]);
                body.push('\n');
                i += 1;
            }
            if i == lines.len() {
                return Err(format!("line {}: unclosed ``` block", start + 1));
            }
            out.push((start + 1, info, body, i + 1));
        }
        i += 1;
    }
    Ok(out)
}

/// The examples of a README text, in order.
fn examples(text: &str) -> Result<Vec<Example>, String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out: Vec<Example> = Vec::new();
    // Line after the closing fence of the last sql block, while an output may still follow it.
    let mut open_sql: Option<usize> = None;
    for (line, info, body, end) in fences(text)? {
        let only_blank_since = |from: usize| lines[from - 1..line - 1].iter().all(|l| l.trim().is_empty());
        match info.as_str() {
            "sql" => {
                // The option comment: the closest non-blank line above the fence.
                let mut options = Options::default();
                if let Some((n, above)) =
                    lines[..line - 1].iter().enumerate().rev().find(|(_, l)| !l.trim().is_empty())
                {
                    if above.trim_start().starts_with("<!--") && above.contains(MARKER) {
                        options = parse_options(above, n + 1)?;
                    }
                }
                out.push(Example { line, sql: body, output: None, options });
                open_sql = Some(end + 1);
            }
            "output" => match open_sql.take() {
                Some(after) if only_blank_since(after) => {
                    out.last_mut().expect("an sql block").output = Some(body)
                }
                _ => return Err(format!("line {line}: an ```output block must follow a ```sql block")),
            },
            _ => open_sql = None,
        }
    }
    Ok(out)
}

/// psql's text with its alignment normalised: no trailing or leading blank lines, cells
/// trimmed, rules (`----+----`) of any length equal.
fn normalise(text: &str) -> String {
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            let t = l.trim();
            if !t.is_empty() && t.chars().all(|c| c == '-' || c == '+') {
                "---".to_string()
            } else {
                t.split('|').map(str::trim).collect::<Vec<_>>().join(" | ")
            }
        })
        .collect();
    let first = lines.iter().position(|l| !l.is_empty()).unwrap_or(lines.len());
    let last = lines.iter().rposition(|l| !l.is_empty()).map_or(first, |i| i + 1);
    lines[first..last].join("\n")
}

/// psql's stderr reduced to the error it reports: `ERROR:` and the `DETAIL:`/`HINT:` lines
/// after it, without the `psql:<stdin>:N: ` prefix.
fn error_lines(stderr: &str) -> String {
    let mut out = String::new();
    let mut in_error = false;
    for l in stderr.lines() {
        let l = match l.find(": ERROR:") {
            Some(i) if l.starts_with("psql:") => &l[i + 2..],
            _ => l,
        };
        if l.starts_with("ERROR:") {
            in_error = true;
        } else if !(l.starts_with("DETAIL:") || l.starts_with("HINT:")) {
            in_error = false;
        }
        if in_error {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// Sets each sequence of schema tapeflow owned by a column to follow that column's largest
/// value, so the ids a block sees do not depend on the (rolled back) blocks before it.
const RESET_SEQUENCES: &str = r#"DO $reset$ DECLARE r record; m bigint; BEGIN
  FOR r IN SELECT s.oid::regclass AS seq, t.oid::regclass AS tbl, a.attname
           FROM pg_class s
           JOIN pg_namespace n ON n.oid = s.relnamespace
           JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = s.oid
                           AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
           JOIN pg_class t ON t.oid = d.refobjid
           JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
           WHERE s.relkind = 'S' AND n.nspname = 'tapeflow' LOOP
    EXECUTE format('SELECT coalesce(max(%I), 0) FROM %s', r.attname, r.tbl) INTO m;
    PERFORM setval(r.seq, m + 1, false);
  END LOOP;
END $reset$;
"#;

/// What psql printed for a script: exit status, stdout, stderr.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn psql(url: &str, script: &str) -> Run {
    let mut child = Command::new("psql")
        .arg(url)
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-v", "SHOW_CONTEXT=never", "-f", "-"])
        .env(
            "PGOPTIONS",
            "-c TimeZone=UTC -c extra_float_digits=0 -c max_parallel_workers_per_gather=0 -c client_min_messages=warning",
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run psql");
    child.stdin.take().expect("stdin").write_all(script.as_bytes()).expect("write the script to psql");
    let out = child.wait_with_output().expect("wait for psql");
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The script psql runs for an example: quiet set-up, the block as written, quiet clean-up.
fn script(e: &Example) -> String {
    let mut s = String::from("\\set QUIET 1\n");
    if !e.options.commit {
        s.push_str("BEGIN;\n");
    }
    s.push_str(RESET_SEQUENCES);
    s.push_str("\\set QUIET 0\n");
    s.push_str(&e.sql);
    s.push_str("\n\\set QUIET 1\n");
    if !e.options.commit {
        s.push_str("ROLLBACK;\n");
    }
    s
}

/// What the example printed, in the form its output block shows.
fn shown(e: &Example, run: &Run) -> Result<String, String> {
    match (run.ok, e.options.error) {
        (true, false) => Ok(run.stdout.clone()),
        (false, true) => Ok(format!("{}{}", run.stdout, error_lines(&run.stderr))),
        (true, true) => Err("ran without the error its `error` option expects".into()),
        (false, false) => Err(format!("failed:\n{}", run.stderr.trim_end())),
    }
}

/// A database with the schema and `fixture` loaded.
fn load_fixture(name: &str, db: &TestDb) -> Result<(), String> {
    let sql = match name {
        "empty" => return Ok(()),
        "market" => std::fs::read_to_string(repo_root().join("tests/fixtures/readme.sql"))
            .map_err(|e| format!("reading tests/fixtures/readme.sql: {e}"))?,
        other => return Err(format!("unknown fixture {other:?} (market, empty)")),
    };
    let run = psql(&db.url, &sql);
    if run.ok {
        Ok(())
    } else {
        Err(format!("loading fixture {name}: {}", run.stderr))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sql_example_of_the_readme_runs_and_shows_its_output() {
    // Another file to check a draft: TAPEFLOW_README=path.
    let path = std::env::var_os("TAPEFLOW_README").map_or_else(|| repo_root().join("README.md"), Into::into);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let name =
        path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
    let examples = examples(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(!examples.is_empty(), "no sql blocks found in {name}");

    let mut dbs: BTreeMap<String, TestDb> = BTreeMap::new();
    let mut failures = String::new();
    // The README with every output block as the system printed it, for whoever updates it.
    let mut actual: Vec<(usize, String)> = Vec::new();
    let (mut ran, mut compared, mut skipped) = (0, 0, Vec::new());
    for e in &examples {
        if let Some(reason) = &e.options.no_run {
            skipped.push(format!("{name}:{}: {reason}", e.line));
            continue;
        }
        let fixture = e.options.fixture.clone().unwrap_or_else(|| "market".into());
        if !dbs.contains_key(&fixture) {
            let db = TestDb::create(&format!("readme_{fixture}"), false).await;
            if let Err(err) = load_fixture(&fixture, &db) {
                let _ = writeln!(failures, "{name}:{}: {err}\n", e.line);
                continue;
            }
            dbs.insert(fixture.clone(), db);
        }
        let run = psql(&dbs[&fixture].url, &script(e));
        ran += 1;
        match shown(e, &run) {
            Err(err) => {
                let _ = writeln!(failures, "{name}:{}: the example {err}\n{}\n", e.line, e.sql.trim_end());
            }
            Ok(out) => {
                actual.push((e.line, out.clone()));
                if let Some(expected) = &e.output {
                    compared += 1;
                    if normalise(expected) != normalise(&out) {
                        let _ = writeln!(
                            failures,
                            "{name}:{}: the output differs.\n--- shown\n{}\n--- printed\n{}\n",
                            e.line,
                            expected.trim_end(),
                            out.trim_end()
                        );
                    }
                }
            }
        }
    }
    let report = repo_root().join("target/readme_sql.actual.txt");
    let mut body = String::new();
    for (line, out) in &actual {
        let _ = write!(body, "== {name}:{line}\n```output\n{}```\n\n", out);
    }
    let _ = std::fs::create_dir_all(repo_root().join("target"));
    let _ = std::fs::write(&report, body);
    eprintln!(
        "{name}: {} sql blocks, {ran} ran, {compared} outputs compared, {} not run:\n{}",
        examples.len(),
        skipped.len(),
        skipped.join("\n")
    );
    assert!(failures.is_empty(), "{failures}(every block's printed output: {})", report.display());
}

#[test]
fn blocks_options_and_outputs_are_parsed() {
    let md = "text\n\n<!-- sql-doctest: fixture=empty commit -->\n```sql\nSELECT 1;\n```\n\n```output\n ?column?\n----------\n        1\n(1 row)\n```\n\n```sh\nmake psql\n```\n\n```output\nnot after sql\n```\n";
    assert!(examples(md).unwrap_err().contains("line 19"));
    let md = "<!-- sql-doctest: no-run: needs a broker -->\n```sql\nSELECT 1;\n```\n\n- item:\n\n  ```sql\n  SELECT 2;\n  ```\n  ```output\n  2\n  ```\n";
    let ex = examples(md).unwrap();
    assert_eq!(ex.len(), 2);
    assert_eq!(ex[0].options.no_run.as_deref(), Some("needs a broker"));
    assert_eq!((ex[0].line, ex[0].output.as_deref()), (2, None));
    assert_eq!((ex[1].line, ex[1].sql.as_str(), ex[1].output.as_deref()), (8, "SELECT 2;\n", Some("2\n")));
    assert_eq!(ex[1].options, Options::default());

    let o = parse_options("<!-- sql-doctest: fixture=empty commit error -->", 1).unwrap();
    assert_eq!(o, Options { fixture: Some("empty".into()), commit: true, error: true, no_run: None });
    assert!(parse_options("<!-- sql-doctest: no-run -->", 3).unwrap_err().contains("needs a reason"));
    assert!(parse_options("<!-- sql-doctest: transactional -->", 3).unwrap_err().contains("unknown"));
    // A comment that is not the tester's is not an option.
    let ex = examples("<!-- a note -->\n```sql\nSELECT 1;\n```\n").unwrap();
    assert_eq!(ex[0].options, Options::default());
    assert!(examples("```sql\nSELECT 1;\n").unwrap_err().contains("unclosed"));
}

#[test]
fn only_alignment_is_normalised() {
    let printed = " a |   b   \n---+-------\n 1 | x y\n(1 row)\n\n";
    assert_eq!(normalise(printed), normalise("a | b\n--+--\n  1 |   x y\n(1 row)"));
    assert_ne!(normalise(printed), normalise(" a | b\n---+---\n 1 | x  y\n(1 row)"));
    assert_ne!(normalise(printed), normalise(" a | b\n---+---\n 2 | x y\n(1 row)"));
    assert_ne!(normalise(printed), normalise(" a | b\n---+---\n 1 | x y\n(2 rows)"));
}

#[test]
fn errors_are_shown_as_psql_prints_them() {
    let stderr = "psql:<stdin>:9: ERROR:  unknown symbol ZZZ\nHINT:  see tapeflow.symbols\npsql:<stdin>:9: NOTICE:  x\n";
    assert_eq!(error_lines(stderr), "ERROR:  unknown symbol ZZZ\nHINT:  see tapeflow.symbols\n");
    let e = Example { line: 1, sql: String::new(), output: None, options: Options::default() };
    let failed = Run { ok: false, stdout: String::new(), stderr: stderr.into() };
    assert!(shown(&e, &failed).unwrap_err().contains("unknown symbol"));
    let expects = Example { options: Options { error: true, ..Options::default() }, ..e };
    assert_eq!(
        shown(&expects, &failed).unwrap(),
        "ERROR:  unknown symbol ZZZ\nHINT:  see tapeflow.symbols\n"
    );
    let ok = Run { ok: true, stdout: "x\n".into(), stderr: String::new() };
    assert!(shown(&expects, &ok).is_err());
}
