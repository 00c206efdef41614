//! The RouteLLM paper's router metrics, exactly as `route_eval.py` in the routing data folder defines them:
//! APGR, CPT(50%), CPT(80%) and cost saved at 95% of strong-model quality, per source, over all 0/1-scored rows,
//! and over a MIX in which every source weighs the same.
//!
//! Pure functions over rows already loaded; the `eval` command does the I/O.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// One scored query: what the weak and the strong model achieved, and the router's difficulty.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub id: String,
    pub source: String,
    /// True for 0/1 correctness; false for a 1–10 judge score (mapped to 0–1 in MIX).
    pub zero_one: bool,
    pub weak: f64,
    pub strong: f64,
    pub difficulty: f64,
}

/// The figures of one group of rows.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Metrics {
    pub n: usize,
    /// Mean weak-model score.
    pub weak_mean: f64,
    /// Mean strong-model score.
    pub strong_mean: f64,
    pub apgr: f64,
    pub cpt50: f64,
    pub cpt80: f64,
    pub saved95: f64,
}

/// The quality curve: share of strong calls `c` and quality `q(c)`, for routing the most difficult first.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    pub shares: Vec<f64>,
    pub qualities: Vec<f64>,
}

/// route_eval.py breaks ties in difficulty by the sha256 of the id, so equal scores never favour a source.
fn tie_key(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

/// `weighted_curve` of route_eval.py: rows as `(outcome, weight)`.
pub fn curve(rows: &[(&Outcome, f64)]) -> Curve {
    let mut order: Vec<(&Outcome, f64, String)> =
        rows.iter().map(|(o, w)| (*o, *w, tie_key(&o.id))).collect();
    order.sort_by(|a, b| {
        b.0.difficulty
            .total_cmp(&a.0.difficulty)
            .then_with(|| a.2.cmp(&b.2))
    });
    let total: f64 = order.iter().map(|r| r.1).sum();
    let mut q: f64 = order.iter().map(|r| r.1 * r.0.weak).sum();
    let mut c = 0.0;
    let mut shares = Vec::with_capacity(order.len() + 1);
    let mut qualities = Vec::with_capacity(order.len() + 1);
    shares.push(0.0);
    qualities.push(q / total);
    for (o, w, _) in &order {
        q += w * (o.strong - o.weak);
        c += w;
        shares.push(c / total);
        qualities.push(q / total);
    }
    Curve { shares, qualities }
}

/// `metrics` of route_eval.py for weighted rows. `None` for an empty group.
pub fn metrics(rows: &[(&Outcome, f64)]) -> Option<(Metrics, Curve)> {
    if rows.is_empty() {
        return None;
    }
    let total: f64 = rows.iter().map(|r| r.1).sum();
    let w = rows.iter().map(|(o, wt)| wt * o.weak).sum::<f64>() / total;
    let s = rows.iter().map(|(o, wt)| wt * o.strong).sum::<f64>() / total;
    let curve = curve(rows);
    let gap = s - w;
    let pgr: Vec<f64> = curve
        .qualities
        .iter()
        .map(|q| if gap != 0.0 { (q - w) / gap } else { 1.0 })
        .collect();
    let apgr = (0..rows.len())
        .map(|k| (pgr[k] + pgr[k + 1]) / 2.0 * (curve.shares[k + 1] - curve.shares[k]))
        .sum();
    let first =
        |pred: &dyn Fn(usize) -> bool| (0..pgr.len()).find(|&k| pred(k)).map_or(1.0, |k| curve.shares[k]);
    let cpt50 = first(&|k| pgr[k] >= 0.5);
    let cpt80 = first(&|k| pgr[k] >= 0.8);
    let need95 = first(&|k| curve.qualities[k] >= 0.95 * s - 1e-12);
    let m = Metrics {
        n: rows.len(),
        weak_mean: w,
        strong_mean: s,
        apgr,
        cpt50,
        cpt80,
        saved95: 1.0 - need95,
    };
    Some((m, curve))
}

/// Name of the group of all 0/1-scored rows.
pub const ALL: &str = "ALL(0/1 sources)";
/// Name of the equal-weight mix of sources.
pub const MIX: &str = "MIX(sources equal)";

/// Every group route_eval.py reports, in its (sorted) order: each source, [`ALL`] and [`MIX`].
pub fn report(outcomes: &[Outcome]) -> BTreeMap<String, (Metrics, Curve)> {
    let mut by_source: BTreeMap<&str, Vec<&Outcome>> = BTreeMap::new();
    for o in outcomes {
        by_source.entry(o.source.as_str()).or_default().push(o);
    }
    let mut groups: BTreeMap<String, Vec<(Outcome, f64)>> = BTreeMap::new();
    for (source, rows) in &by_source {
        groups.insert(
            (*source).to_owned(),
            rows.iter().map(|o| ((*o).clone(), 1.0)).collect(),
        );
    }
    let all: Vec<(Outcome, f64)> = outcomes
        .iter()
        .filter(|o| o.zero_one)
        .map(|o| (o.clone(), 1.0))
        .collect();
    groups.insert(ALL.to_owned(), all);
    // A mixed workload: every source weighs the same, judge scores 1-10 mapped to 0-1. route_eval.py decides
    // "judge" by a source's first row, and so does this.
    let mut mix = Vec::with_capacity(outcomes.len());
    for rows in by_source.values() {
        let judge = rows.first().is_some_and(|o| !o.zero_one);
        let weight = 1.0 / rows.len() as f64;
        for o in rows {
            let mut o = (*o).clone();
            if judge {
                o.weak = (o.weak - 1.0) / 9.0;
                o.strong = (o.strong - 1.0) / 9.0;
            }
            mix.push((o, weight));
        }
    }
    groups.insert(MIX.to_owned(), mix);
    groups
        .into_iter()
        .filter_map(|(name, rows)| {
            let refs: Vec<(&Outcome, f64)> = rows.iter().map(|(o, w)| (o, *w)).collect();
            metrics(&refs).map(|m| (name, m))
        })
        .collect()
}

/// The table route_eval.py prints, same columns and formats.
pub fn format_table(report: &BTreeMap<String, (Metrics, Curve)>) -> String {
    let mut out = format!(
        "{:24} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>8}\n",
        "source", "n", "W", "S", "APGR", "CPT50", "CPT80", "saved@95"
    );
    for (name, (m, _)) in report {
        out.push_str(&format!(
            "{:24} {:6} {:6.3} {:6.3} {:6.3} {:>6} {:>6} {:>8}\n",
            name,
            m.n,
            m.weak_mean,
            m.strong_mean,
            m.apgr,
            percent(m.cpt50),
            percent(m.cpt80),
            percent(m.saved95)
        ));
    }
    out
}

fn percent(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// The curves as CSV: `group,share_strong,quality,pgr` per point.
pub fn curves_csv(report: &BTreeMap<String, (Metrics, Curve)>) -> String {
    let mut out = String::from("group,share_strong,quality,pgr\n");
    for (name, (m, c)) in report {
        let gap = m.strong_mean - m.weak_mean;
        for (share, q) in c.shares.iter().zip(&c.qualities) {
            let pgr = if gap != 0.0 { (q - m.weak_mean) / gap } else { 1.0 };
            out.push_str(&format!("\"{name}\",{share:.6},{q:.6},{pgr:.6}\n"));
        }
    }
    out
}

/// PGR against share of strong calls, one line per group, with the random router's diagonal for reference.
pub fn curves_svg(report: &BTreeMap<String, (Metrics, Curve)>, title: &str) -> String {
    const W: f64 = 640.0;
    const H: f64 = 440.0;
    const L: f64 = 60.0;
    const T: f64 = 40.0;
    const PW: f64 = 420.0;
    const PH: f64 = 340.0;
    const COLOURS: [&str; 8] = [
        "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2",
    ];
    // PGR can overshoot 1 (the weak model beats the strong one on some rows); the axis shows 0..1.3.
    let y_max = 1.3;
    let x = |c: f64| L + c * PW;
    let y = |p: f64| T + PH - (p.clamp(-0.1, y_max) / y_max) * PH;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" \
         font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{L}\" y=\"22\" font-size=\"15\">{}</text>\n",
        xml_escape(title)
    );
    for i in 0..=10 {
        let c = f64::from(i) / 10.0;
        s.push_str(&format!(
            "<line x1=\"{0:.1}\" y1=\"{1:.1}\" x2=\"{0:.1}\" y2=\"{2:.1}\" stroke=\"#eee\"/>\
             <text x=\"{0:.1}\" y=\"{3:.1}\" text-anchor=\"middle\">{4:.0}%</text>\n",
            x(c),
            T,
            T + PH,
            T + PH + 16.0,
            c * 100.0
        ));
    }
    for i in 0..=13 {
        let p = f64::from(i) / 10.0;
        s.push_str(&format!(
            "<line x1=\"{0:.1}\" y1=\"{1:.1}\" x2=\"{2:.1}\" y2=\"{1:.1}\" stroke=\"{4}\"/>\
             <text x=\"{3:.1}\" y=\"{5:.1}\" text-anchor=\"end\">{p:.1}</text>\n",
            L,
            y(p),
            L + PW,
            L - 6.0,
            if i == 10 { "#999" } else { "#eee" },
            y(p) + 4.0
        ));
    }
    s.push_str(&format!(
        "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#aaa\" stroke-dasharray=\"4 4\"/>\n",
        x(0.0),
        y(0.0),
        x(1.0),
        y(1.0)
    ));
    s.push_str(&format!(
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">share of queries sent to the strong model</text>\n\
         <text transform=\"translate(16 {:.1}) rotate(-90)\" text-anchor=\"middle\">PGR (performance gap \
         recovered)</text>\n",
        L + PW / 2.0,
        H - 10.0,
        T + PH / 2.0
    ));
    for (i, (name, (m, c))) in report.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let gap = m.strong_mean - m.weak_mean;
        let points: Vec<String> = c
            .shares
            .iter()
            .zip(&c.qualities)
            .map(|(share, q)| {
                let pgr = if gap != 0.0 { (q - m.weak_mean) / gap } else { 1.0 };
                format!("{:.1},{:.1}", x(*share), y(pgr))
            })
            .collect();
        s.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\"/>\n",
            points.join(" ")
        ));
        let ly = T + 14.0 + 18.0 * i as f64;
        s.push_str(&format!(
            "<line x1=\"{0:.1}\" y1=\"{1:.1}\" x2=\"{2:.1}\" y2=\"{1:.1}\" stroke=\"{colour}\" stroke-width=\"3\"/>\
             <text x=\"{3:.1}\" y=\"{4:.1}\">{5} APGR {6:.3}</text>\n",
            L + PW + 10.0,
            ly,
            L + PW + 28.0,
            L + PW + 32.0,
            ly + 4.0,
            xml_escape(&short_name(name)),
            m.apgr
        ));
    }
    s.push_str("</svg>\n");
    s
}

fn short_name(name: &str) -> String {
    name.chars().take(20).collect()
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(id: &str, source: &str, weak: f64, strong: f64, difficulty: f64) -> Outcome {
        Outcome {
            id: id.into(),
            source: source.into(),
            zero_one: true,
            weak,
            strong,
            difficulty,
        }
    }

    #[test]
    fn oracle_and_inverse_orderings() {
        let rows = [
            o("a", "s", 0.0, 1.0, 1.0),
            o("b", "s", 1.0, 1.0, 0.5),
            o("c", "s", 0.0, 0.0, 0.0),
        ];
        let r = report(&rows);
        let (m, c) = &r["s"];
        assert_eq!(m.n, 3);
        assert!((m.weak_mean - 1.0 / 3.0).abs() < 1e-12);
        assert!((m.strong_mean - 2.0 / 3.0).abs() < 1e-12);
        // The one useful row goes first: PGR reaches 1 after a third of the calls.
        assert_eq!(c.qualities.len(), 4);
        assert!((m.cpt50 - 1.0 / 3.0).abs() < 1e-12);
        // Area: 0→1/3 rises 0→1 (1/6), then 1 for 2/3.
        assert!((m.apgr - (1.0 / 6.0 + 2.0 / 3.0)).abs() < 1e-12);
        assert!((m.saved95 - 2.0 / 3.0).abs() < 1e-12);
        assert!(r.contains_key(ALL) && r.contains_key(MIX));
    }

    #[test]
    fn mix_weighs_sources_equally_and_maps_judge_scores() {
        let mut judge = o("j", "arena", 1.0, 10.0, 0.0);
        judge.zero_one = false;
        let rows = [
            judge,
            o("x", "mmlu", 0.0, 1.0, 1.0),
            o("y", "mmlu", 0.0, 0.0, 0.5),
        ];
        let r = report(&rows);
        let (mix, _) = &r[MIX];
        // arena: weak 0, strong 1 after mapping, weight 1/2; mmlu rows weight 1/4 each.
        assert!((mix.weak_mean - 0.0).abs() < 1e-12);
        assert!((mix.strong_mean - 0.75).abs() < 1e-12);
        assert_eq!(r[ALL].0.n, 2);
    }

    #[test]
    fn csv_and_svg_render() {
        let rows = [o("a", "s", 0.0, 1.0, 1.0), o("b", "s", 1.0, 1.0, 0.5)];
        let r = report(&rows);
        let csv = curves_csv(&r);
        assert!(csv.starts_with("group,share_strong,quality,pgr\n"));
        assert_eq!(csv.lines().count(), 1 + 3 * 3);
        let svg = curves_svg(&r, "t <&>");
        assert!(
            svg.starts_with("<svg") && svg.contains("t &lt;&amp;&gt;") && svg.trim_end().ends_with("</svg>")
        );
    }
}
