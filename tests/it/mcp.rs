//! The MCP server over stdio, driven by a scripted client: `initialize`, `tools/list`,
//! `tools/call` against a real monitoring service (real shards and Redis); a tool whose
//! data is missing answers an error result, an unknown tool a JSON-RPC error, and a
//! monitoring that is down an error result naming it — the server itself keeps running.

use payrail_tests::mcp::McpClient;
use payrail_tests::stack::TestStack;
use payrail_tests::{authorize_body, free_port, http, services};
use serde_json::json;

const TOKEN: &str = "mcp-admin-token-0123456789abcdef0123";

#[test]
fn mcp_lists_and_calls_tools_over_stdio() {
    let stack = TestStack::start("mcp");
    let dir = stack.dir.join("monitoring");
    std::fs::create_dir_all(&dir).expect("dir");
    let token_file = dir.join("admin-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("token");
    let listen = format!("127.0.0.1:{}", free_port());
    let mut monitoring =
        services::start_monitoring(&dir, &listen, &token_file, &stack.settings[0], "")
            .expect("monitoring");
    for i in 0..3 {
        let reply = http::post(
            stack.addr(),
            "/api/payments/authorize",
            &authorize_body("MERCHANT-MCP", 500 + i, &format!("mcp-{i}")),
        );
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let config = dir.join("mcp.toml");
    std::fs::write(
        &config,
        format!(
            "admin_url = \"http://{listen}\"\ntoken_file = \"{}\"\n",
            token_file.display()
        ),
    )
    .expect("config");

    let mut client = McpClient::spawn(&config);
    let init = client.initialize();
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25", "{init}");
    assert_eq!(init["result"]["serverInfo"]["name"], "payrail", "{init}");
    assert!(
        init["result"]["capabilities"]["tools"].is_object(),
        "{init}"
    );

    let tools = client.request("tools/list", json!({}));
    let mut names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "analyse_latest_drill",
            "analyse_latest_load_test",
            "analyse_live_metrics",
            "breaker_states",
            "consumer_lag",
            "dlq_messages",
            "query_payments",
            "reconciliation_report",
            "statistics",
        ],
        "{tools}"
    );
    let query = tools["result"]["tools"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == "query_payments"))
        .expect("query_payments");
    assert!(
        query["inputSchema"]["properties"]["merchant_id"].is_object(),
        "{query}"
    );

    let (error, text) = client.call(
        "query_payments",
        json!({ "merchant_id": "MERCHANT-MCP", "limit": 2 }),
    );
    assert!(!error, "{text}");
    let payments: serde_json::Value = serde_json::from_str(&text).expect("JSON text");
    assert_eq!(
        payments["payments"].as_array().map(Vec::len),
        Some(2),
        "{payments}"
    );
    assert!(payments["payments"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|p| p["merchantId"] == "MERCHANT-MCP"));

    let (error, text) = client.call("statistics", json!({}));
    assert!(!error, "{text}");
    let stats: serde_json::Value = serde_json::from_str(&text).expect("JSON text");
    let authorized: i64 = stats["payments"]["shards"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["payments"]["AUTHORIZED"].as_i64())
        .sum();
    assert_eq!(authorized, 3, "{stats}");

    // No broker configured on this monitoring: an error result the model can read.
    let (error, text) = client.call("consumer_lag", json!({}));
    assert!(
        error && text.contains("503") && text.contains("kafka"),
        "{text}"
    );
    let unknown = client.request(
        "tools/call",
        json!({ "name": "drop_tables", "arguments": {} }),
    );
    assert!(
        unknown["error"].is_object() || unknown["result"]["isError"] == true,
        "{unknown}"
    );

    // Monitoring down: an error result, and the server keeps answering.
    monitoring.stop();
    let (error, text) = client.call("breaker_states", json!({}));
    assert!(error && text.contains("unreachable"), "{text}");
    let again = client.request("tools/list", json!({}));
    assert!(again["result"]["tools"].is_array(), "{again}");
}
