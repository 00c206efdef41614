//! Spend reports: spend by team, user, model or day, with savings against the baseline model beside it.
//!
//! Reports read the daily rollup (`ledger_daily`), never the raw ledger, so they stay fast at any ledger size.
//! The same query serves `switchyard spend` ([`SpendArgs`], [`run`]) and the admin endpoint ([`spend_handler`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use chrono::{NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::Row as _;

use super::sql::parse_decimal;
use crate::error::Error;
use crate::store::Store;

/// What to group spend by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    Team,
    User,
    Model,
    Day,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Table,
    Json,
    Csv,
}

/// `switchyard spend --by team|user|model|day --since 30d [--format table|json|csv]`
#[derive(Debug, Clone, clap::Args)]
pub struct SpendArgs {
    /// Group spend by this.
    #[arg(long, value_enum, default_value = "team")]
    pub by: GroupBy,
    /// How far back, e.g. `30d`, `12h`, `1week` (whole UTC days are counted).
    #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
    pub since: Duration,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Only this team.
    #[arg(long)]
    pub team: Option<String>,
}

/// One line of a report. Money is serialised as decimal strings, never floats.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpendLine {
    pub key: String,
    pub requests: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost: Decimal,
    pub baseline_cost: Decimal,
    /// `baseline_cost - cost`.
    pub savings: Decimal,
    /// Savings as a percentage of the baseline, to two places; absent when the baseline is zero.
    pub savings_pct: Option<Decimal>,
    /// Spend on local models (internal cost), part of `cost`.
    pub local_cost: Decimal,
}

/// The first day a `--since` duration covers.
pub fn since_day(since: Duration) -> NaiveDate {
    let back = chrono::Duration::from_std(since).unwrap_or(chrono::Duration::days(36500));
    (Utc::now() - back).date_naive()
}

#[derive(Default)]
struct Acc {
    requests: i64,
    input: i64,
    output: i64,
    cost: Decimal,
    baseline: Decimal,
    local_cost: Decimal,
}

/// Spend grouped by `by` from `since` (inclusive, UTC day), optionally for one team; largest spend first.
pub async fn spend(
    store: &Store,
    by: GroupBy,
    since: NaiveDate,
    team: Option<&str>,
) -> Result<Vec<SpendLine>, sqlx::Error> {
    let mut acc: BTreeMap<String, Acc> = BTreeMap::new();
    match store {
        Store::Postgres(pool) => {
            // The grouping column comes from a fixed list, never from input.
            let sql = match by {
                GroupBy::Team => PG_BY_TEAM,
                GroupBy::User => PG_BY_USER,
                GroupBy::Model => PG_BY_MODEL,
                GroupBy::Day => PG_BY_DAY,
            };
            let rows = sqlx::query(sql).bind(since).bind(team).fetch_all(pool).await?;
            for r in rows {
                let a = acc.entry(r.try_get("k")?).or_default();
                a.requests += r.try_get::<i64, _>("requests")?;
                a.input += r.try_get::<i64, _>("input_tokens")?;
                a.output += r.try_get::<i64, _>("output_tokens")?;
                a.cost += r.try_get::<Decimal, _>("cost")?;
                a.baseline += r.try_get::<Decimal, _>("baseline_cost")?;
                a.local_cost += r.try_get::<Decimal, _>("local_cost")?;
            }
        }
        Store::Sqlite(pool) => {
            // Money is TEXT in SQLite; sum it in Rust to stay exact.
            let rows = sqlx::query(
                "SELECT day, team, user_name, model, local, requests, input_tokens, output_tokens, cost, \
                 baseline_cost FROM ledger_daily WHERE day >= ? AND (? IS NULL OR team = ?)",
            )
            .bind(since.format("%Y-%m-%d").to_string())
            .bind(team)
            .bind(team)
            .fetch_all(pool)
            .await?;
            for r in rows {
                let key: String = match by {
                    GroupBy::Team => r.try_get("team")?,
                    GroupBy::User => r.try_get("user_name")?,
                    GroupBy::Model => r.try_get("model")?,
                    GroupBy::Day => r.try_get("day")?,
                };
                let cost = parse_decimal(&r.try_get::<String, _>("cost")?)?;
                let a = acc.entry(key).or_default();
                a.requests += r.try_get::<i64, _>("requests")?;
                a.input += r.try_get::<i64, _>("input_tokens")?;
                a.output += r.try_get::<i64, _>("output_tokens")?;
                a.cost += cost;
                a.baseline += parse_decimal(&r.try_get::<String, _>("baseline_cost")?)?;
                if r.try_get::<bool, _>("local")? {
                    a.local_cost += cost;
                }
            }
        }
    }
    let mut lines: Vec<SpendLine> = acc
        .into_iter()
        .map(|(key, a)| {
            let savings = a.baseline - a.cost;
            let savings_pct =
                (!a.baseline.is_zero()).then(|| (savings * Decimal::ONE_HUNDRED / a.baseline).round_dp(2));
            SpendLine {
                key,
                requests: a.requests,
                input_tokens: a.input,
                output_tokens: a.output,
                cost: a.cost.normalize(),
                baseline_cost: a.baseline.normalize(),
                savings: savings.normalize(),
                savings_pct,
                local_cost: a.local_cost.normalize(),
            }
        })
        .collect();
    if by == GroupBy::Day {
        lines.sort_by(|a, b| a.key.cmp(&b.key));
    } else {
        lines.sort_by(|a, b| b.cost.cmp(&a.cost).then_with(|| a.key.cmp(&b.key)));
    }
    Ok(lines)
}

macro_rules! pg_report {
    ($key:literal) => {
        concat!(
            "SELECT ",
            $key,
            " AS k, sum(requests)::bigint AS requests, sum(input_tokens)::bigint AS input_tokens, ",
            "sum(output_tokens)::bigint AS output_tokens, sum(cost) AS cost, sum(baseline_cost) AS baseline_cost, ",
            "coalesce(sum(cost) FILTER (WHERE local), 0) AS local_cost ",
            "FROM ledger_daily WHERE day >= $1 AND ($2::text IS NULL OR team = $2) GROUP BY 1"
        )
    };
}
const PG_BY_TEAM: &str = pg_report!("team");
const PG_BY_USER: &str = pg_report!("user_name");
const PG_BY_MODEL: &str = pg_report!("model");
const PG_BY_DAY: &str = pg_report!("to_char(day, 'YYYY-MM-DD')");

/// Renders lines in the chosen format.
pub fn render(lines: &[SpendLine], by: GroupBy, format: Format) -> String {
    let by_name = match by {
        GroupBy::Team => "team",
        GroupBy::User => "user",
        GroupBy::Model => "model",
        GroupBy::Day => "day",
    };
    let pct = |l: &SpendLine| l.savings_pct.map_or(String::new(), |p| format!("{p}%"));
    match format {
        Format::Json => serde_json::to_string_pretty(lines).unwrap_or_else(|_| "[]".to_owned()) + "\n",
        Format::Csv => {
            let mut out = format!(
                "{by_name},requests,input_tokens,output_tokens,spend_usd,baseline_usd,savings_usd,savings_pct,local_usd\n"
            );
            for l in lines {
                let _ = writeln!(
                    out,
                    "{},{},{},{},{},{},{},{},{}",
                    csv_field(&l.key),
                    l.requests,
                    l.input_tokens,
                    l.output_tokens,
                    l.cost,
                    l.baseline_cost,
                    l.savings,
                    l.savings_pct.map_or(String::new(), |p| p.to_string()),
                    l.local_cost
                );
            }
            out
        }
        Format::Table => {
            let header = [
                by_name,
                "requests",
                "input tok",
                "output tok",
                "spend $",
                "baseline $",
                "savings $",
                "savings",
                "local $",
            ];
            let mut rows: Vec<[String; 9]> = lines
                .iter()
                .map(|l| {
                    [
                        l.key.clone(),
                        l.requests.to_string(),
                        l.input_tokens.to_string(),
                        l.output_tokens.to_string(),
                        l.cost.round_dp(4).to_string(),
                        l.baseline_cost.round_dp(4).to_string(),
                        l.savings.round_dp(4).to_string(),
                        pct(l),
                        l.local_cost.round_dp(4).to_string(),
                    ]
                })
                .collect();
            let total_cost: Decimal = lines.iter().map(|l| l.cost).sum();
            let total_base: Decimal = lines.iter().map(|l| l.baseline_cost).sum();
            let total_saved = total_base - total_cost;
            rows.push([
                "TOTAL".to_owned(),
                lines.iter().map(|l| l.requests).sum::<i64>().to_string(),
                lines.iter().map(|l| l.input_tokens).sum::<i64>().to_string(),
                lines.iter().map(|l| l.output_tokens).sum::<i64>().to_string(),
                total_cost.round_dp(4).to_string(),
                total_base.round_dp(4).to_string(),
                total_saved.round_dp(4).to_string(),
                if total_base.is_zero() {
                    String::new()
                } else {
                    format!(
                        "{}%",
                        (total_saved * Decimal::ONE_HUNDRED / total_base).round_dp(2)
                    )
                },
                lines
                    .iter()
                    .map(|l| l.local_cost)
                    .sum::<Decimal>()
                    .round_dp(4)
                    .to_string(),
            ]);
            let mut widths = header.map(str::len);
            for r in &rows {
                for (w, c) in widths.iter_mut().zip(r) {
                    *w = (*w).max(c.chars().count());
                }
            }
            let mut out = String::new();
            let line = |out: &mut String, cells: &[&str]| {
                for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
                    if i == 0 {
                        let _ = write!(out, "{c:<w$}");
                    } else {
                        let _ = write!(out, "  {c:>w$}");
                    }
                }
                out.push('\n');
            };
            line(&mut out, &header);
            for r in &rows {
                let cells: Vec<&str> = r.iter().map(String::as_str).collect();
                line(&mut out, &cells);
            }
            out
        }
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// `switchyard spend`: runs the report and returns it rendered (the CLI prints it).
pub async fn run(store: &Store, args: &SpendArgs) -> Result<String, sqlx::Error> {
    let lines = spend(store, args.by, since_day(args.since), args.team.as_deref()).await?;
    Ok(render(&lines, args.by, args.format))
}

/// Query string of the admin endpoint: `?by=team&since=30d&format=json&team=eng`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpendQuery {
    #[serde(default = "default_by")]
    pub by: GroupBy,
    #[serde(default = "default_since", with = "humantime_serde")]
    pub since: Duration,
    #[serde(default = "default_format_json")]
    pub format: Format,
    pub team: Option<String>,
}

fn default_by() -> GroupBy {
    GroupBy::Team
}
fn default_since() -> Duration {
    Duration::from_secs(30 * 86_400)
}
fn default_format_json() -> Format {
    Format::Json
}

/// `GET /admin/spend?by=…&since=…&format=…`: the same report over HTTP (JSON unless asked otherwise), behind
/// the admin key like every `/admin` route.
pub async fn spend_handler(
    State(state): State<crate::state::AppState>,
    Query(q): Query<SpendQuery>,
) -> Response {
    match spend(&state.store, q.by, since_day(q.since), q.team.as_deref()).await {
        Ok(lines) => {
            let content_type = match q.format {
                Format::Json => "application/json",
                Format::Csv => "text/csv; charset=utf-8",
                Format::Table => "text/plain; charset=utf-8",
            };
            (
                [(http::header::CONTENT_TYPE, content_type)],
                render(&lines, q.by, q.format),
            )
                .into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "spend report failed");
            Error::new(
                crate::error::ErrorKind::Unavailable,
                "The spend report is unavailable: the database cannot be reached.",
            )
            .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use rust_decimal_macros::dec;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        spend: SpendArgs,
    }

    #[test]
    fn parses_the_documented_command_line() {
        let cli = Cli::try_parse_from(["spend", "--by", "model", "--since", "30d", "--format", "csv"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cli.spend.by, GroupBy::Model);
        assert_eq!(cli.spend.since, Duration::from_secs(30 * 86_400));
        assert_eq!(cli.spend.format, Format::Csv);
        assert!(Cli::try_parse_from(["spend", "--by", "galaxy"]).is_err());
    }

    #[test]
    fn renders_money_exactly_with_savings() {
        let lines = vec![SpendLine {
            key: "eng, core".into(),
            requests: 3,
            input_tokens: 30,
            output_tokens: 9,
            cost: dec!(0.25),
            baseline_cost: dec!(1.00),
            savings: dec!(0.75),
            savings_pct: Some(dec!(75.00)),
            local_cost: dec!(0),
        }];
        let csv = render(&lines, GroupBy::Team, Format::Csv);
        assert_eq!(
            csv.lines().nth(1),
            Some("\"eng, core\",3,30,9,0.25,1.00,0.75,75.00,0")
        );
        let json: serde_json::Value =
            serde_json::from_str(&render(&lines, GroupBy::Team, Format::Json)).unwrap_or_default();
        assert_eq!(
            json[0]["cost"], "0.25",
            "money is a decimal string, never a float"
        );
        assert_eq!(json[0]["savings_pct"], "75.00");
        let table = render(&lines, GroupBy::Team, Format::Table);
        assert!(table.contains("75.00%") && table.lines().count() == 3, "{table}");
    }
}
