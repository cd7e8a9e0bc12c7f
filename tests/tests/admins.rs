//! The admins' issue end to end, on SQLite and PostgreSQL: usage per team,
//! the members list, spend limits (enforced with the hold, also under
//! concurrency) and the CSV exports.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use creditgate_domain::Role;
use creditgate_e2e::openai::{OpenAiApp, mock_openai};
use creditgate_e2e::{Backend, TestApp, on_both_databases};
use creditgate_server::TokenRequest;
use serde_json::{Value, json};
use wiremock::MockServer;

const PLATFORM_KEY: &str = "sk-platform-0123456789abcdef";
const BEN_KEY: &str = "sk-ben-0123456789abcdef";
const RUN: &str = "mutation($i: AiRequestInput!) { runAi(input: $i) { creditsCharged } }";
const SET_LIMIT: &str = "mutation($u: ID, $t: String, $m: Credits) { setSpendLimit(userId: $u, team: $t, monthlyCredits: $m) { userId team monthlyCredits spent } }";
const LIMITS: &str = "{ spendLimits { userId team monthlyCredits spent } }";
const MEMBERS: &str = "query($f: Int, $a: String) { members(first: $f, after: $a) { edges { cursor node { user { id team wallet { available } } billingMode lastActiveAt } } pageInfo { hasNextPage endCursor } } }";
const USAGE: &str = "query($f: DateTime!, $t: DateTime!) { orgUsage(from: $f, to: $t, granularity: DAY) {
    totals { credits requests }
    perUser(first: 100) { user { id team } totals { credits requests byokRequests } permanentSpent }
    perTeam { team members byokMembers totals { credits requests byokRequests } permanentSpent } } }";

/// A token with a team claim.
fn token(app: &TestApp, sub: &str, org: &str, role: Role, team: Option<&str>) -> String {
    app.app
        .auth
        .issue(&TokenRequest {
            sub: sub.into(),
            org: org.into(),
            role,
            name: None,
            email: None,
            team: team.map(str::to_owned),
            org_name: None,
            ttl: chrono::Duration::hours(1),
        })
        .unwrap()
}

fn chat() -> Value {
    json!({"i": {"feature": "CHAT", "provider": "openai", "model": "gpt-4o-mini",
                 "messages": [{"role": "user", "content": "What is the capital of France?"}]}})
}

fn credits(v: &Value) -> f64 {
    v.as_str().unwrap_or_else(|| panic!("credits: {v}")).parse().unwrap()
}

async fn chat_requests(mock: &MockServer) -> usize {
    mock.received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/v1/chat/completions")
        .count()
}

async fn env(backend: Backend) -> (OpenAiApp, MockServer) {
    let mock = mock_openai(&[PLATFORM_KEY, BEN_KEY], None).await;
    let app = OpenAiApp::start(backend, &mock, PLATFORM_KEY, "").await;
    (app, mock)
}

fn range() -> Value {
    let now = chrono::Utc::now();
    json!({"f": (now - chrono::Duration::days(2)).to_rfc3339(), "t": (now + chrono::Duration::days(1)).to_rfc3339()})
}

async fn per_team_numbers_are_the_sums_of_their_members(backend: Backend) {
    // 0.2 monthly credits: beyond them requests are paid from permanent credits.
    let mock = mock_openai(&[PLATFORM_KEY, BEN_KEY], None).await;
    let plans = "[[plans]]\nid = \"free\"\nname = \"Free\"\nmonthly_credits_per_user = \"0.2\"\n";
    let env = OpenAiApp::start(backend, &mock, PLATFORM_KEY, plans).await;
    let app = &env.app;
    let members = [
        ("ann", Some("red")),
        ("ben", Some("red")),
        ("cid", Some("blue")),
        ("dot", None),
    ];
    for (i, (who, team)) in members.iter().enumerate() {
        let t = token(app, who, "acme", Role::Member, *team);
        app.gql(Some(&t), "{ wallet { available } }", json!({})).await.data();
        app.grant(who, "10", &format!("grant-{who}")).await.data();
        for _ in 0..=i {
            app.gql(Some(&t), RUN, chat()).await.data();
        }
    }
    // Another organization's team of the same name stays out.
    let eve = token(app, "eve", "other", Role::Member, Some("red"));
    app.gql(Some(&eve), RUN, chat()).await.data();
    // A BYOK key makes ben a BYOK member of red.
    let ben = token(app, "ben", "acme", Role::Member, Some("red"));
    app.gql(
        Some(&ben),
        "mutation($k: String!) { setByokKey(provider: \"openai\", apiKey: $k) { provider } }",
        json!({"k": BEN_KEY}),
    )
    .await
    .data();

    let admin = token(app, "ada", "acme", Role::Admin, Some("ops"));
    let u = app.gql(Some(&admin), USAGE, range()).await;
    let u = &u.data()["orgUsage"];
    let teams = u["perTeam"].as_array().unwrap();
    let users = u["perUser"].as_array().unwrap();
    let names: Vec<&Value> = teams.iter().map(|t| &t["team"]).collect();
    assert_eq!(names.len(), 3, "red, blue and no team: {teams:?}");
    for pair in teams.windows(2) {
        assert!(credits(&pair[0]["totals"]["credits"]) >= credits(&pair[1]["totals"]["credits"]));
    }
    let mut team_sum = 0.0;
    for t in teams {
        let of_team: Vec<&Value> = users.iter().filter(|p| p["user"]["team"] == t["team"]).collect();
        let credits_sum: f64 = of_team.iter().map(|p| credits(&p["totals"]["credits"])).sum();
        let requests: i64 = of_team.iter().map(|p| p["totals"]["requests"].as_i64().unwrap()).sum();
        let permanent: f64 = of_team.iter().map(|p| credits(&p["permanentSpent"])).sum();
        assert!((credits(&t["totals"]["credits"]) - credits_sum).abs() < 1e-9, "{t}");
        assert_eq!(t["totals"]["requests"].as_i64().unwrap(), requests, "{t}");
        assert!((credits(&t["permanentSpent"]) - permanent).abs() < 1e-9, "{t}");
        team_sum += credits(&t["totals"]["credits"]);
    }
    assert!((team_sum - credits(&u["totals"]["credits"])).abs() < 1e-9);
    let red = teams.iter().find(|t| t["team"] == "red").unwrap();
    assert_eq!(red["members"], 2);
    assert_eq!(red["byokMembers"], 1);
    assert_eq!(red["totals"]["requests"], 3, "ann 1, ben 2");
    // cid's three requests of 0.109: 0.2 from the monthly allocation, 0.127 from permanent credits.
    let blue = teams.iter().find(|t| t["team"] == "blue").unwrap();
    assert_eq!(blue["permanentSpent"], "0.127", "{blue}");
    let none = teams.iter().find(|t| t["team"].is_null()).unwrap();
    assert_eq!(none["totals"]["requests"], 4);

    let ann = token(app, "ann", "acme", Role::Member, Some("red"));
    assert_eq!(app.gql(Some(&ann), USAGE, range()).await.code(), "FORBIDDEN");
}

async fn admins_see_only_their_own_members_and_limits(backend: Backend) {
    let (env, _mock) = env(backend).await;
    let app = &env.app;
    for who in ["m1", "m2", "m3"] {
        let t = token(app, who, "acme", Role::Member, Some("red"));
        app.gql(Some(&t), "{ wallet { available } }", json!({})).await.data();
    }
    let m1 = token(app, "m1", "acme", Role::Member, Some("red"));
    app.gql(Some(&m1), RUN, chat()).await.data();
    let outsider = token(app, "zed", "other", Role::Member, Some("red"));
    app.gql(Some(&outsider), "{ wallet { available } }", json!({}))
        .await
        .data();

    let admin = token(app, "ada", "acme", Role::Admin, None);
    let other_admin = token(app, "oz", "other", Role::Admin, None);
    // Pages of two, by id.
    let p1 = app.gql(Some(&admin), MEMBERS, json!({"f": 2})).await;
    let p1 = &p1.data()["members"];
    assert_eq!(p1["pageInfo"]["hasNextPage"], true);
    let p2 = app
        .gql(Some(&admin), MEMBERS, json!({"f": 2, "a": p1["pageInfo"]["endCursor"]}))
        .await;
    let p2 = &p2.data()["members"];
    let ids: Vec<&str> = p1["edges"]
        .as_array()
        .unwrap()
        .iter()
        .chain(p2["edges"].as_array().unwrap())
        .map(|e| e["node"]["user"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["m1", "m2", "m3"], "the admin never used a wallet");
    let m1_node = &p1["edges"][0]["node"];
    assert_eq!(m1_node["billingMode"], "CREDITS");
    assert!(m1_node["lastActiveAt"].is_string(), "{m1_node}");
    assert!(p2["edges"][0]["node"]["lastActiveAt"].is_null());

    let set = app.gql(Some(&admin), SET_LIMIT, json!({"u": "m2", "m": "5"})).await;
    assert_eq!(
        set.data()["setSpendLimit"],
        json!({"userId": "m2", "team": null, "monthlyCredits": "5", "spent": "0"})
    );
    let team = app.gql(Some(&admin), SET_LIMIT, json!({"t": "red", "m": "50"})).await;
    let spent = credits(&team.data()["setSpendLimit"]["spent"]);
    assert!(spent > 0.0, "m1 already spent this cycle: {team:?}");
    // The other organization's admin sees none of it and cannot touch it.
    let theirs = app.gql(Some(&other_admin), LIMITS, json!({})).await;
    assert_eq!(theirs.data()["spendLimits"], json!([]));
    let members = app.gql(Some(&other_admin), MEMBERS, json!({})).await;
    let ids: Vec<&str> = members.data()["members"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["user"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["zed"]);
    let usage = app.gql(Some(&other_admin), USAGE, range()).await;
    let teams = usage.data()["orgUsage"]["perTeam"].as_array().unwrap().clone();
    assert!(teams.iter().all(|t| t["members"].as_i64().unwrap() <= 1), "{teams:?}");
    assert_eq!(
        app.gql(Some(&other_admin), SET_LIMIT, json!({"u": "m2", "m": "1"}))
            .await
            .code(),
        "NOT_FOUND"
    );
    // Mine: both, and the one that applies to m1 is the team's.
    let mine = app.gql(Some(&admin), LIMITS, json!({})).await;
    assert_eq!(mine.data()["spendLimits"].as_array().unwrap().len(), 2);
    let w = app
        .gql(
            Some(&m1),
            "{ wallet { spendLimit { team monthlyCredits } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        w.data()["wallet"]["spendLimit"],
        json!({"team": "red", "monthlyCredits": "50"})
    );
    let m2 = token(app, "m2", "acme", Role::Member, Some("red"));
    let w = app
        .gql(
            Some(&m2),
            "{ wallet { spendLimit { userId monthlyCredits } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        w.data()["wallet"]["spendLimit"],
        json!({"userId": "m2", "monthlyCredits": "5"}),
        "the stricter"
    );

    // Members are FORBIDDEN; input is checked.
    assert_eq!(app.gql(Some(&m1), MEMBERS, json!({})).await.code(), "FORBIDDEN");
    assert_eq!(app.gql(Some(&m1), LIMITS, json!({})).await.code(), "FORBIDDEN");
    assert_eq!(
        app.gql(Some(&m1), SET_LIMIT, json!({"t": "red", "m": "1000"}))
            .await
            .code(),
        "FORBIDDEN"
    );
    for bad in [
        json!({"m": "1"}),
        json!({"u": "m1", "t": "red", "m": "1"}),
        json!({"u": "m1", "m": "-1"}),
    ] {
        assert_eq!(app.gql(Some(&admin), SET_LIMIT, bad).await.code(), "BAD_USER_INPUT");
    }
    // Removing.
    let removed = app.gql(Some(&admin), SET_LIMIT, json!({"u": "m2", "m": null})).await;
    assert!(removed.data()["setSpendLimit"].is_null());
    let mine = app.gql(Some(&admin), LIMITS, json!({})).await;
    assert_eq!(mine.data()["spendLimits"].as_array().unwrap().len(), 1);
}

async fn a_spent_limit_refuses_before_any_provider_call(backend: Backend) {
    let (env, mock) = env(backend).await;
    let app = &env.app;
    let m = token(app, "m", "acme", Role::Member, Some("red"));
    app.gql(Some(&m), "{ wallet { available } }", json!({})).await.data();
    let admin = token(app, "ada", "acme", Role::Admin, None);
    app.gql(Some(&admin), SET_LIMIT, json!({"u": "m", "m": "0"}))
        .await
        .data();
    let r = app.gql(Some(&m), RUN, chat()).await;
    assert_eq!(r.code(), "SPEND_LIMIT_REACHED", "{:?}", r);
    assert_eq!(chat_requests(&mock).await, 0, "the provider heard nothing");
    // The OpenAI-compatible door answers 402.
    let resp = app
        .http
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(&m)
        .json(&json!({"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 402);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "spend_limit_reached");
    assert_eq!(chat_requests(&mock).await, 0);
    // Nothing was held or charged.
    let w = app.wallet(&m).await;
    assert_eq!(w["held"], "0");
    assert_eq!(w["available"], "100");
}

/// 100 concurrent requests from ten members; returns the limits' `spent`
/// and what was charged in all.
async fn hundred_concurrent(app: &TestApp, tokens: &[String]) -> (usize, usize, f64) {
    let mut tasks = Vec::new();
    for t in tokens {
        for _ in 0..10 {
            let http = app.http.clone();
            let url = app.url("/graphql");
            let t = t.clone();
            tasks.push(tokio::spawn(async move {
                let resp: Value = http
                    .post(url)
                    .bearer_auth(t)
                    .json(&json!({"query": RUN, "variables": chat()}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                resp
            }));
        }
    }
    let (mut ok, mut refused, mut charged) = (0, 0, 0.0);
    for t in tasks {
        let r = t.await.unwrap();
        match r["errors"][0]["extensions"]["code"].as_str() {
            None => {
                ok += 1;
                charged += credits(&r["data"]["runAi"]["creditsCharged"]);
            }
            Some("SPEND_LIMIT_REACHED") => refused += 1,
            Some(other) => panic!("unexpected {other}: {r}"),
        }
    }
    (ok, refused, charged)
}

async fn concurrent_requests_of_a_team_never_exceed_its_limit(backend: Backend) {
    let (env, mock) = env(backend).await;
    let app = &env.app;
    let tokens: Vec<String> = (0..10)
        .map(|i| token(app, &format!("t{i}"), "acme", Role::Member, Some("red")))
        .collect();
    for t in &tokens {
        app.gql(Some(t), "{ wallet { available } }", json!({})).await.data();
    }
    let admin = token(app, "ada", "acme", Role::Admin, None);
    app.gql(Some(&admin), SET_LIMIT, json!({"t": "red", "m": "2"}))
        .await
        .data();
    let (ok, refused, charged) = hundred_concurrent(app, &tokens).await;
    assert!(ok > 0 && refused > 0, "{ok} served, {refused} refused");
    assert!(charged <= 2.0 + 1e-9, "charged {charged} over a limit of 2");
    assert_eq!(
        chat_requests(&mock).await,
        ok,
        "refused requests never reached the provider"
    );
    let limits = app.gql(Some(&admin), LIMITS, json!({})).await;
    let spent = credits(&limits.data()["spendLimits"][0]["spent"]);
    assert!(
        (spent - charged).abs() < 1e-9,
        "the counter is the charges: {spent} vs {charged}"
    );
    let u = app.gql(Some(&admin), USAGE, range()).await;
    let red = u.data()["orgUsage"]["perTeam"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["team"] == "red")
        .unwrap()
        .clone();
    assert!((credits(&red["totals"]["credits"]) - charged).abs() < 1e-9);
}

async fn concurrent_requests_never_exceed_a_member_limit(backend: Backend) {
    let (env, _mock) = env(backend).await;
    let app = &env.app;
    let tokens: Vec<String> = (0..10)
        .map(|i| token(app, &format!("u{i}"), "acme", Role::Member, Some("red")))
        .collect();
    let admin = token(app, "ada", "acme", Role::Admin, None);
    for (i, t) in tokens.iter().enumerate() {
        app.gql(Some(t), "{ wallet { available } }", json!({})).await.data();
        app.gql(Some(&admin), SET_LIMIT, json!({"u": format!("u{i}"), "m": "0.3"}))
            .await
            .data();
    }
    let (ok, refused, charged) = hundred_concurrent(app, &tokens).await;
    assert!(ok > 0 && refused > 0, "{ok} served, {refused} refused");
    assert!(charged <= 3.0 + 1e-9);
    let limits = app.gql(Some(&admin), LIMITS, json!({})).await;
    for l in limits.data()["spendLimits"].as_array().unwrap() {
        assert!(credits(&l["spent"]) <= 0.3 + 1e-9, "{l}");
    }
    for t in &tokens {
        let w = app.wallet(t).await;
        assert_eq!(w["held"], "0");
        assert!(100.0 - credits(&w["available"]) <= 0.3 + 1e-9, "{w}");
    }
}

async fn get_csv(app: &TestApp, token: &str, path: &str) -> (u16, String) {
    let resp = app.http.get(app.url(path)).bearer_auth(token).send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

async fn csv_exports_equal_the_apis_numbers(backend: Backend) {
    let (env, _mock) = env(backend).await;
    let app = &env.app;
    for (who, n) in [("a", 3), ("b", 1)] {
        let t = token(app, who, "acme", Role::Member, Some("red"));
        for _ in 0..n {
            app.gql(Some(&t), RUN, chat()).await.data();
        }
    }
    let admin = token(app, "ada", "acme", Role::Admin, None);
    let r = range();
    let q = format!(
        "?from={}&to={}&granularity=day",
        urlencode(r["f"].as_str().unwrap()),
        urlencode(r["t"].as_str().unwrap())
    );
    let (status, body) = get_csv(app, &admin, &format!("/export/org-usage.csv{q}")).await;
    assert_eq!(status, 200, "{body}");
    let mut rd = csv::Reader::from_reader(body.as_bytes());
    let header: Vec<String> = rd.headers().unwrap().iter().map(str::to_owned).collect();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let mut per_user: std::collections::BTreeMap<String, (f64, i64)> = Default::default();
    for rec in rd.records() {
        let rec = rec.unwrap();
        let e = per_user.entry(rec[col("user_id")].to_owned()).or_default();
        e.0 += rec[col("credits")].parse::<f64>().unwrap();
        e.1 += rec[col("requests")].parse::<i64>().unwrap();
    }
    let u = app.gql(Some(&admin), USAGE, r).await;
    let api: std::collections::BTreeMap<String, (f64, i64)> = u.data()["orgUsage"]["perUser"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["user"]["id"].as_str().unwrap().to_owned(),
                (
                    credits(&p["totals"]["credits"]),
                    p["totals"]["requests"].as_i64().unwrap(),
                ),
            )
        })
        .collect();
    assert_eq!(per_user.len(), 2);
    for (id, (c, n)) in &api {
        let (ec, en) = per_user[id];
        assert!((c - ec).abs() < 1e-9 && *n == en, "{id}: API {c}/{n}, CSV {ec}/{en}");
    }

    // The caller's own log: as many rows as the API's entries, same amounts.
    let a = token(app, "a", "acme", Role::Member, Some("red"));
    let (status, body) = get_csv(app, &a, "/export/activity.csv").await;
    assert_eq!(status, 200, "{body}");
    let mut rd = csv::Reader::from_reader(body.as_bytes());
    let rows: Vec<csv::StringRecord> = rd.records().map(Result::unwrap).collect();
    let log = app
        .gql(
            Some(&a),
            "{ activity(first: 100) { edges { node { kind creditsConsumed } } } }",
            json!({}),
        )
        .await;
    let edges = log.data()["activity"]["edges"].as_array().unwrap().clone();
    assert_eq!(rows.len(), edges.len());
    for (row, e) in rows.iter().zip(&edges) {
        assert_eq!(&row[2], e["node"]["kind"].as_str().unwrap());
        assert_eq!(&row[10], e["node"]["creditsConsumed"].as_str().unwrap());
    }

    // Errors are JSON with their code.
    let (status, body) = get_csv(app, &a, &format!("/export/org-usage.csv{q}")).await;
    assert_eq!(status, 403);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"]["code"],
        "FORBIDDEN"
    );
    let resp = app.http.get(app.url("/export/activity.csv")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let (status, body) = get_csv(app, &admin, "/export/org-usage.csv?from=yesterday").await;
    assert_eq!(status, 400);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"]["code"],
        "BAD_USER_INPUT"
    );
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

on_both_databases!(
    per_team_numbers_are_the_sums_of_their_members,
    admins_see_only_their_own_members_and_limits,
    a_spent_limit_refuses_before_any_provider_call,
    concurrent_requests_of_a_team_never_exceed_its_limit,
    concurrent_requests_never_exceed_a_member_limit,
    csv_exports_equal_the_apis_numbers,
);
