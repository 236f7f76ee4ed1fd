#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <string>
#include <thread>

#include "app/config.hpp"

using fp::app::ConfigError;
using fp::app::parse_config;

namespace {

const char* kGood = R"(workers: 2
memory: {arena: 8MiB, page_order: 4}
listeners:
  - name: web
    listen: 127.0.0.1:8080
    upstreams: [127.0.0.1:9000, "[::1]:9001"]
    timeouts: {connect: 250ms, idle: 2m}
    max_connections: 100
    max_inflight_kib: 256
)";

// The message parse_config throws for `text`, or "" when it parses.
std::string error_of(const std::string& text) {
    try {
        parse_config(text, "f.yaml");
    } catch (const ConfigError& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST_CASE("a good config parses into typed settings") {
    auto c = parse_config(kGood, "f.yaml");
    CHECK(c.workers == 2);
    CHECK(c.worker.memory.arena_bytes == 8u << 20);
    REQUIRE(c.worker.listeners.size() == 1);
    const auto& l = c.worker.listeners[0];
    CHECK(l.name == "web");
    CHECK(l.listen.str() == "127.0.0.1:8080");
    REQUIRE(l.upstreams.size() == 2);
    CHECK(l.upstreams[1].str() == "[::1]:9001");
    CHECK(l.connect_timeout.count() == 250);
    CHECK(l.idle_timeout.count() == 120000);
    CHECK(l.max_connections == 100);
    CHECK(l.max_inflight_bytes == 256 * 1024);
    CHECK(fp::app::describe(c).find("listen: \"127.0.0.1:8080\"") != std::string::npos);
}

TEST_CASE("workers: auto means one per core; defaults fill what is left out") {
    auto c = parse_config(
        "listeners: [{name: a, listen: '127.0.0.1:1', upstreams: ['127.0.0.1:2']}]", "f.yaml");
    const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
    CHECK(c.workers == cores);  // left out: auto
    auto a = parse_config(
        "workers: auto\nlisteners: [{name: a, listen: '127.0.0.1:1', upstreams: ['127.0.0.1:2']}]",
        "f.yaml");
    CHECK(a.workers == cores);
    auto three = parse_config(
        "workers: 3\nlisteners: [{name: a, listen: '127.0.0.1:1', upstreams: ['127.0.0.1:2']}]",
        "f.yaml");
    CHECK(three.workers == 3);
    CHECK(c.worker.memory.order == 4);
    CHECK(c.worker.listeners[0].max_inflight_bytes == 1024 * 1024);
}

TEST_CASE("bad configs are rejected with file:line:col") {
    std::string base =
        "listeners:\n  - name: a\n    listen: 127.0.0.1:1\n    upstreams: [127.0.0.1:2]\n";
    CHECK(error_of(base + "    colour: blue\n") == "f.yaml:5:5: unknown key listeners[0].colour");
    CHECK(error_of("bogus: 1\n" + base) == "f.yaml:1:1: unknown key config.bogus");
    CHECK(error_of(base + "    max_connections: lots\n") ==
          "f.yaml:5:22: listeners[0].max_connections must be a decimal integer");
    CHECK(error_of(base + "    max_connections: 0\n") ==
          "f.yaml:5:22: listeners[0].max_connections = 0 is out of range 1..1000000");
    CHECK(error_of("listeners:\n  - name: a\n    listen: 127.0.0.1:99999\n    upstreams: "
                   "[127.0.0.1:2]\n") ==
          "f.yaml:3:13: listeners[0].listen '127.0.0.1:99999': port must be 0..65535 (0: the "
          "kernel picks one)");
    CHECK(
        error_of(
            "listeners:\n  - name: a\n    listen: localhost:80\n    upstreams: [127.0.0.1:2]\n") ==
        "f.yaml:3:13: listeners[0].listen 'localhost:80': not a numeric IPv4 or IPv6 address");
    CHECK(error_of("listeners:\n  - name: a\n    listen: ::1:80\n    upstreams: [127.0.0.1:2]\n") ==
          "f.yaml:3:13: listeners[0].listen '::1:80': IPv6 addresses need [brackets]:port");
    CHECK(error_of(base + "  - name: b\n    listen: 127.0.0.1:1\n    upstreams: [127.0.0.1:3]\n") ==
          "f.yaml:6:13: tcp listen address 127.0.0.1:1 is already used by listener 'a'");
    CHECK(error_of(base + "    timeouts: {connect: 5 s}\n") ==
          "f.yaml:5:25: listeners[0].timeouts.connect must be a positive duration like 250ms, 5s, "
          "2m");
    CHECK(error_of("memory: {arena: 3MiB}\n" + base) ==
          "f.yaml:1:17: memory.arena must be a size like 64MiB: a multiple of 2MiB from 4MiB to "
          "64GiB");
    CHECK(error_of("memory: {page_order: 12}\n" + base) ==
          "f.yaml:1:22: memory.page_order = 12 is out of range 0..9");
    CHECK(error_of("workers: many\n" + base) == "f.yaml:1:10: workers must be 'auto' or 1..256");
    CHECK(error_of(base + "    protocol: sctp\n") ==
          "f.yaml:5:15: listeners[0].protocol 'sctp' is not supported (tcp or udp)");
    CHECK(error_of("listeners:\n  - name: a\n    listen: 127.0.0.1:1\n    upstreams: []\n") ==
          "f.yaml:4:16: listeners[0].upstreams must be a non-empty list of addresses");
    CHECK(error_of("listeners: [\n").rfind("f.yaml:2:1: ", 0) == 0);  // a YAML syntax error
    CHECK(error_of("") == "f.yaml:1:1: the configuration is empty");
}

TEST_CASE("the receive path and its fragment size") {
    std::string base =
        "listeners:\n  - name: a\n    listen: 127.0.0.1:1\n    upstreams: [127.0.0.1:2]\n";
    CHECK(parse_config(base, "f.yaml").worker.recv_path == fp::net::RecvPath::kAuto);
    CHECK(parse_config("io_uring: {receive: fragments}\n" + base, "f.yaml").worker.recv_path ==
          fp::net::RecvPath::kFragments);
    CHECK(parse_config("io_uring: {receive: incremental}\n" + base, "f.yaml").worker.recv_path ==
          fp::net::RecvPath::kIncremental);
    CHECK(error_of("io_uring: {receive: zerocopy}\n" + base) ==
          "f.yaml:1:21: io_uring.receive must be auto, incremental or fragments");
    CHECK(error_of("io_uring: {bundle: true}\n" + base) ==
          "f.yaml:1:12: unknown key io_uring.bundle");
    // The ablation switches: io_uring's task work, UDP's GSO.
    CHECK(parse_config(base, "f.yaml").worker.taskrun == fp::net::TaskRun::kAuto);
    CHECK(parse_config("io_uring: {taskrun: coop}\n" + base, "f.yaml").worker.taskrun ==
          fp::net::TaskRun::kCoop);
    CHECK(parse_config("io_uring: {taskrun: none}\n" + base, "f.yaml").worker.taskrun ==
          fp::net::TaskRun::kNone);
    CHECK(error_of("io_uring: {taskrun: sometimes}\n" + base) ==
          "f.yaml:1:21: io_uring.taskrun must be auto, defer, coop or none");
    CHECK(parse_config(base, "f.yaml").worker.direct_descriptors);
    CHECK(!parse_config(base, "f.yaml").worker.send_zc);
    CHECK(parse_config(base, "f.yaml").worker.bundles);
    CHECK(!parse_config("io_uring: {bundles: false}\n" + base, "f.yaml").worker.bundles);
    CHECK(parse_config(base, "f.yaml").worker.batch_wait_us == 50);
    CHECK(parse_config("io_uring: {batch_wait_us: 0}\n" + base, "f.yaml").worker.batch_wait_us ==
          0);
    CHECK(error_of("io_uring: {batch_wait_us: 1001}\n" + base) ==
          "f.yaml:1:27: io_uring.batch_wait_us = 1001 is out of range 0..1000");
    CHECK(parse_config(base, "f.yaml").worker.napi_busy_poll_us == 0);
    CHECK(parse_config("io_uring: {napi_busy_poll_us: 50}\n" + base, "f.yaml")
              .worker.napi_busy_poll_us == 50);
    CHECK(parse_config("io_uring: {send_zc: true}\n" + base, "f.yaml").worker.send_zc);
    CHECK(!parse_config("io_uring: {direct_descriptors: false}\n" + base, "f.yaml")
               .worker.direct_descriptors);
    CHECK(error_of("io_uring: {direct_descriptors: maybe}\n" + base) ==
          "f.yaml:1:32: io_uring.direct_descriptors must be true or false");
    CHECK(parse_config(base, "f.yaml").worker.udp_gso);
    CHECK(!parse_config("udp_gso: false\n" + base, "f.yaml").worker.udp_gso);
    CHECK(error_of("udp_gso: 2\n" + base) == "f.yaml:1:10: config.udp_gso must be true or false");
    CHECK(parse_config(base, "f.yaml").worker.recv_fragment == 64 * 1024);  // the page
    CHECK(parse_config("memory: {page_order: 1}\n" + base, "f.yaml").worker.recv_fragment ==
          8 * 1024);
    CHECK(parse_config("memory: {recv_fragment: 32KiB}\n" + base, "f.yaml").worker.recv_fragment ==
          32 * 1024);
    CHECK(error_of("memory: {recv_fragment: 12KiB}\n" + base) ==
          "f.yaml:1:25: memory.recv_fragment must be a power of two from 4KiB to the page size "
          "(64KiB)");
    CHECK(error_of("memory: {recv_fragment: 128KiB}\n" + base) ==
          "f.yaml:1:25: memory.recv_fragment must be a power of two from 4KiB to the page size "
          "(64KiB)");
}

TEST_CASE("drain_timeout: 30s unless set; 0s stops at once") {
    std::string base =
        "listeners:\n  - name: a\n    listen: 127.0.0.1:1\n    upstreams: [127.0.0.1:2]\n";
    CHECK(parse_config(base, "f.yaml").drain_timeout == std::chrono::seconds(30));
    CHECK(parse_config("drain_timeout: 0s\n" + base, "f.yaml").drain_timeout.count() == 0);
    CHECK(parse_config("drain_timeout: 2m\n" + base, "f.yaml").drain_timeout ==
          std::chrono::minutes(2));
    CHECK(error_of("drain_timeout: soon\n" + base) ==
          "f.yaml:1:16: config.drain_timeout must be a duration like 250ms, 5s, 2m (0s: at once)");
}

TEST_CASE("durations and sizes") {
    using fp::app::parse_duration;
    using fp::app::parse_size;
    CHECK(parse_duration("250ms")->count() == 250);
    CHECK(parse_duration("5s")->count() == 5000);
    CHECK(parse_duration("1h")->count() == 3600000);
    CHECK_FALSE(parse_duration("5"));
    CHECK_FALSE(parse_duration("s"));
    CHECK_FALSE(parse_duration("-1s"));
    CHECK(*parse_size("64MiB") == 64u << 20);
    CHECK(*parse_size("512") == 512);
    CHECK(*parse_size("2GiB") == 2ull << 30);
    CHECK_FALSE(parse_size("64MB"));
    CHECK_FALSE(parse_size("MiB"));
}

TEST_CASE("udp listeners have their own keys; tcp and udp may share a port") {
    auto c = parse_config(R"(listeners:
  - {name: dns, protocol: udp, listen: "127.0.0.1:5353", upstreams: ["127.0.0.1:53"],
     session_timeout: 2s, max_sessions: 50, max_sessions_per_source: 4}
  - {name: dns-tcp, listen: "127.0.0.1:5353", upstreams: ["127.0.0.1:53"]}
)",
                          "f.yaml");
    REQUIRE(c.worker.udp_listeners.size() == 1);
    REQUIRE(c.worker.listeners.size() == 1);
    const auto& u = c.worker.udp_listeners[0];
    CHECK(u.session_timeout.count() == 2000);
    CHECK(u.max_sessions == 50);
    CHECK(u.max_sessions_per_source == 4);
    CHECK(fp::app::describe(c).find("protocol: udp") != std::string::npos);
    std::string udp =
        "listeners:\n  - name: a\n    protocol: udp\n    listen: 127.0.0.1:1\n"
        "    upstreams: [127.0.0.1:2]\n";
    CHECK(error_of(udp + "    max_connections: 5\n") ==
          "f.yaml:6:5: unknown key listeners[0].max_connections");
    CHECK(
        error_of(udp + "    session_timeout: soon\n") ==
        "f.yaml:6:22: listeners[0].session_timeout must be a positive duration like 250ms, 5s, 2m");
    CHECK(
        error_of(
            udp +
            "  - {name: b, protocol: udp, listen: '127.0.0.1:1', upstreams: ['127.0.0.1:3']}\n") ==
        "f.yaml:6:38: udp listen address 127.0.0.1:1 is already used by listener 'a'");
}

TEST_CASE("operator mistakes are errors, not silent surprises") {
    std::string base =
        "listeners:\n  - name: a\n    listen: 127.0.0.1:1\n    upstreams: [127.0.0.1:2]\n";
    // Duplicate keys: yaml-cpp would keep the first.
    CHECK(error_of(base + "    max_connections: 5\n    max_connections: 6\n") ==
          "f.yaml:6:5: duplicate key listeners[0].max_connections");
    CHECK(error_of("workers: 1\nworkers: 2\n" + base) ==
          "f.yaml:2:1: duplicate key config.workers");
    // Leading zeros (octal to yaml-cpp) and hex.
    CHECK(error_of(base + "    max_connections: 010\n") ==
          "f.yaml:5:22: listeners[0].max_connections must be a decimal integer");
    CHECK(error_of(base + "    max_connections: 0x10\n") ==
          "f.yaml:5:22: listeners[0].max_connections must be a decimal integer");
    CHECK(error_of("workers: 010\n" + base) == "f.yaml:1:10: workers must be 'auto' or 1..256");
    // Upstreams that cannot be right.
    CHECK(error_of(
              "listeners:\n  - name: a\n    listen: 127.0.0.1:1\n    upstreams: [127.0.0.1:1]\n") ==
          "f.yaml:4:17: listeners[0].upstreams 127.0.0.1:1 is the listener's own address: every "
          "connection would loop back");
    CHECK(error_of(
              "listeners:\n  - name: a\n    listen: 127.0.0.1:1\n    upstreams: [0.0.0.0:2]\n") ==
          "f.yaml:4:17: listeners[0].upstreams 0.0.0.0:2: an unspecified address (0.0.0.0, ::) is "
          "not an upstream");
    CHECK(error_of("listeners:\n  - name: a\n    listen: 127.0.0.1:1\n    upstreams: ['[::]:2']\n")
              .find("unspecified address") != std::string::npos);
    // A key that is not a scalar: yaml-cpp's bare "bad conversion", and never 0:0.
    std::string e = error_of(base + "    ? [x]\n    : 1\n");
    CHECK(e.find("f.yaml:0:0") == std::string::npos);
    CHECK(e.find("must be a plain name") != std::string::npos);
    // One queue may not take more than 1/8 of the arena (8 MiB of 64 MiB by default).
    CHECK(error_of(base + "    max_inflight_kib: 1048576\n") ==
          "f.yaml:5:23: listeners[0].max_inflight_kib = 1048576 is out of range 16..8192");
    CHECK(error_of("memory: {arena: 16MiB}\n" + base + "    max_inflight_kib: 4096\n") ==
          "f.yaml:6:23: listeners[0].max_inflight_kib = 4096 is out of range 16..2048");
    auto c =
        parse_config(base + "    timeouts: {send_stall: 5s}\n    share_port: true\n", "f.yaml");
    CHECK(c.worker.listeners[0].send_stall_timeout.count() == 5000);
    CHECK(c.worker.listeners[0].share_port);
    CHECK(parse_config(base, "f.yaml").worker.listeners[0].send_stall_timeout.count() == 60000);
}

TEST_CASE("more workers x arena than the machine has is refused before anything starts") {
    auto c = parse_config(
        "workers: 256\nmemory: {arena: 64GiB}\nlisteners:\n  - name: a\n    listen: "
        "127.0.0.1:1\n    upstreams: [127.0.0.1:2]\n",
        "f.yaml");
    std::string e;
    try {
        fp::app::check_memory(c);
    } catch (const ConfigError& x) {
        e = x.what();
    }
    CHECK(e.rfind("f.yaml:2:17: memory: 256 workers x 65536 MiB arena", 0) == 0);
    CHECK(e.find("more than this process can have") != std::string::npos);
    c.workers = 1;
    c.worker.memory.arena_bytes = 64u << 20;
    CHECK_NOTHROW(fp::app::check_memory(c));
}

// What --check prints loads back as the same configuration: names with '#', ':', quotes and
// backslashes, IPv6 upstreams, every key. Generated configs, a fixed seed.
TEST_CASE("--check's output round-trips") {
    std::mt19937 rng(12345);
    auto pick = [&](auto... v) {
        std::string opts[] = {v...};
        return opts[rng() % sizeof...(v)];
    };
    for (int round = 0; round < 300; ++round) {
        std::string text = "workers: " + std::to_string(1 + rng() % 8) +
                           "\nmemory: {arena: " + std::to_string(2 * (2 + rng() % 40)) +
                           "MiB}\nlisteners:\n";
        int n = 1 + int(rng() % 4);
        for (int i = 0; i < n; ++i) {
            std::string name = pick("web", "a#b", "x: y", "q\\\"uote", "v6 [::1]", "-dash", "#") +
                               std::to_string(i);
            std::string esc;
            for (char ch : name)
                esc += (ch == '"' || ch == '\\') ? std::string("\\") + ch : std::string(1, ch);
            bool udp = rng() % 3 == 0;
            std::string port = std::to_string(1000 + i);
            text += "  - name: \"" + esc + "\"\n    protocol: " + (udp ? "udp" : "tcp") +
                    "\n    listen: \"" + pick("127.0.0.1:", "[::1]:", "0.0.0.0:") + port +
                    "\"\n    upstreams: [\"" + pick("10.0.0.1:80", "[2001:db8::1]:443", "[::1]:9") +
                    "\", \"127.0.0.2:" + std::to_string(1 + rng() % 60000) + "\"]\n";
            if (rng() % 2) text += "    share_port: true\n";
            if (udp)
                text += "    session_timeout: " + std::to_string(1 + rng() % 100) +
                        "s\n    max_responses: " + std::to_string(rng() % 5) + "\n";
            else
                text += "    timeouts: {connect: " + std::to_string(1 + rng() % 900) +
                        "ms, send_stall: 2m}\n    max_inflight_kib: " +
                        std::to_string(16 + rng() % 400) + "\n";
        }
        INFO(text);
        auto a = parse_config(text, "gen.yaml");
        std::string once = fp::app::describe(a);
        INFO(once);
        auto b = parse_config(once, "check.yaml");
        CHECK(fp::app::describe(b) == once);
        REQUIRE(b.worker.listeners.size() == a.worker.listeners.size());
        for (std::size_t i = 0; i < a.worker.listeners.size(); ++i)
            CHECK(b.worker.listeners[i].name == a.worker.listeners[i].name);
    }
}

TEST_CASE("traffic policy keys: parsed, described, and their errors at file:line:col") {
    const std::string head = "listeners:\n  - name: a\n    listen: 127.0.0.1:1\n";
    fp::app::Config c = fp::app::parse_config(
        head +
            "    upstreams: [127.0.0.1:2, {address: 127.0.0.1:3, weight: 3}]\n"
            "    balance: source_hash\n"
            "    allow: [10.0.0.0/8, \"2001:db8::/32\"]\n    deny: [10.1.0.0/16]\n"
            "    max_connections_per_source: 100\n"
            "    new_connections_per_source: {rate: 50/s, burst: 100}\n"
            "    tcp_keepalive: {idle: 60s, interval: 10s, count: 5, side: upstream}\n"
            "    accept_proxy: {versions: [v2], trusted: [10.0.0.0/8], timeout: 3s}\n"
            "    health_check: {interval: 2s, timeout: 1s, rise: 2, fall: 3}\n",
        "f.yaml");
    const auto& l = c.worker.listeners[0];
    CHECK(l.balancing.balance == fp::net::Balance::kSourceHash);
    CHECK(l.balancing.weights == std::vector<std::uint32_t>{1, 3});
    CHECK(l.balancing.maglev != nullptr);
    REQUIRE(l.policy.acl);
    CHECK(l.policy.acl->rules().size() == 3);
    CHECK(l.policy.max_connections == 100);
    CHECK(l.policy.rate.count == 50);
    CHECK(l.policy.rate.burst == 100);
    CHECK(!l.keepalive.client);
    CHECK(l.keepalive.upstream);
    const std::string d = fp::app::describe(c);
    for (const char* want :
         {"upstreams: [\"127.0.0.1:2\", {address: \"127.0.0.1:3\", weight: 3}]",
          "balance: source_hash", "allow: [\"2001:db8::/32\", \"10.0.0.0/8\"]",  // longest first
          "deny: [\"10.1.0.0/16\"]", "max_connections_per_source: 100",
          "new_connections_per_source: {rate: 50/s, burst: 100}",
          "tcp_keepalive: {idle: 60s, interval: 10s, count: 5, side: upstream}",
          "accept_proxy: {versions: [v2], trusted: [\"10.0.0.0/8\"], timeout: 3000ms}",
          "health_check: {interval: 2000ms, timeout: 1000ms, rise: 2, fall: 3}"})
        CHECK_MESSAGE(d.find(want) != std::string::npos, (std::string(want) + " in " + d));
    // What --check prints parses again to the same.
    CHECK(fp::app::describe(fp::app::parse_config(d, "g.yaml")) == d);

    const std::string base = head + "    upstreams: [127.0.0.1:2]\n";
    CHECK(error_of(base + "    balance: fastest\n") ==
          "f.yaml:5:14: listeners[0].balance 'fastest' is not one of round_robin, least_conn, "
          "random2, source_hash");
    CHECK(error_of(head + "    upstreams: [{address: 127.0.0.1:2, weight: 0}]\n") ==
          "f.yaml:4:48: listeners[0].upstreams[].weight = 0 is out of range 1..256");
    CHECK(error_of(base + "    allow: [10.0.0.0/33]\n") ==
          "f.yaml:5:13: listeners[0].allow: '10.0.0.0/33' is not an address or CIDR "
          "(10.0.0.0/8, 2001:db8::/32)");
    CHECK(error_of(base + "    new_connections_per_source: {rate: fast}\n") ==
          "f.yaml:5:40: listeners[0].new_connections_per_source.rate 'fast' must be N/s or N/m, "
          "N > 0");
    CHECK(error_of(base + "    accept_proxy: {versions: [v3]}\n") ==
          "f.yaml:5:31: listeners[0].accept_proxy.versions: 'v3' is not v1 or v2");
    CHECK(error_of(base + "    accept_proxy: {trusted: [nowhere]}\n") ==
          "f.yaml:5:30: listeners[0].accept_proxy.trusted: 'nowhere' is not an address or CIDR "
          "(10.0.0.0/8, 2001:db8::/32)");
    CHECK(error_of(base + "    tcp_keepalive: {idle: 1500ms}\n") ==
          "f.yaml:5:27: listeners[0].tcp_keepalive.idle must be whole seconds, >= 1s");
}

TEST_CASE("send_proxy: a version, or TLVs passed on and a checksum; errors placed") {
    const std::string base =
        "listeners:\n  - name: a\n    listen: 127.0.0.1:1\n    upstreams: [127.0.0.1:2]\n";
    const std::string ap = "    accept_proxy: {versions: [v2]}\n";
    auto parse = [](const std::string& y) { return fp::app::parse_config(y, "f.yaml"); };
    auto c = parse(base + ap +
                   "    send_proxy: {version: v2, pass_tlvs: [authority, unique_id, 0xE0, 225], "
                   "crc32c: true}\n");
    const auto& l = c.worker.listeners[0];
    CHECK(l.send_proxy == 2);
    CHECK(l.proxy_crc32c);
    CHECK(l.pass_tlvs.count() == 4);
    CHECK(l.pass_tlvs.test(0x02));
    CHECK(l.pass_tlvs.test(0x05));
    CHECK(l.pass_tlvs.test(0xE0));
    CHECK(l.pass_tlvs.test(0xE1));
    const std::string d = fp::app::describe(c);
    CHECK_MESSAGE(d.find("send_proxy: {version: v2, pass_tlvs: [authority, unique_id, 224, "
                         "225], crc32c: true}") != std::string::npos,
                  d);
    CHECK(fp::app::describe(parse(d)) == d);
    auto all = parse(base + ap + "    send_proxy: {version: v2, pass_tlvs: all}\n");
    CHECK(all.worker.listeners[0].pass_tlvs.all());
    const std::string da = fp::app::describe(all);
    CHECK(da.find("send_proxy: {version: v2, pass_tlvs: all}") != std::string::npos);
    CHECK(fp::app::describe(parse(da)) == da);
    CHECK(parse(base + "    send_proxy: {version: v1}\n").worker.listeners[0].send_proxy == 1);
    CHECK(fp::app::describe(parse(base + "    send_proxy: v2\n")).find("send_proxy: v2\n") !=
          std::string::npos);

    CHECK(error_of(base + "    send_proxy: v3\n") ==
          "f.yaml:5:17: listeners[0].send_proxy must be v1 or v2");
    CHECK(error_of(base + "    send_proxy: {pass_tlvs: all}\n") ==
          "f.yaml:5:17: listeners[0].send_proxy: version (v1 or v2) is required");
    CHECK(error_of(base + ap + "    send_proxy: {version: v1, crc32c: true}\n") ==
          "f.yaml:6:39: listeners[0].send_proxy.crc32c: a v2 TLV (version: v2)");
    CHECK(error_of(base + "    send_proxy: {version: v2, pass_tlvs: all}\n") ==
          "f.yaml:5:42: listeners[0].send_proxy.pass_tlvs: TLVs come from accept_proxy (with v2)");
    CHECK(error_of(base + ap + "    send_proxy: {version: v2, pass_tlvs: [sni]}\n") ==
          "f.yaml:6:43: listeners[0].send_proxy.pass_tlvs: 'sni' is not a TLV type (alpn, "
          "authority, noop, unique_id, ssl, netns, or 0..255)");
    CHECK(error_of(base + ap + "    send_proxy: {version: v2, pass_tlvs: [0x100]}\n") ==
          "f.yaml:6:43: listeners[0].send_proxy.pass_tlvs: '0x100' is not a TLV type (alpn, "
          "authority, noop, unique_id, ssl, netns, or 0..255)");
    CHECK(error_of(base + ap + "    send_proxy: {version: v2, pass_tlvs: [3]}\n") ==
          "f.yaml:6:43: listeners[0].send_proxy.pass_tlvs: a CRC32C is of its own header, never "
          "passed on (crc32c: true adds one)");
    CHECK(error_of(base + ap + "    send_proxy: {version: v2, tlvs: all}\n") ==
          "f.yaml:6:31: unknown key listeners[0].send_proxy.tlvs");
}

TEST_CASE("routes: each a run of the listener's upstreams; parsed, described, errors placed") {
    const std::string head = "listeners:\n  - name: a\n    listen: 127.0.0.1:1\n";
    fp::app::Config c = fp::app::parse_config(
        head +
            "    balance: source_hash\n"
            "    client_hello_timeout: 2s\n"
            "    routes:\n"
            "      - {sni: [API.example.com, \"*.svc.example.com\"], upstreams: [127.0.0.1:2]}\n"
            "      - {sni: [b.example.com], upstreams: [127.0.0.1:3, {address: 127.0.0.1:4, "
            "weight: 2}]}\n"
            "      - {name: rest, default: true, upstreams: [127.0.0.1:5]}\n",
        "f.yaml");
    const auto& l = c.worker.listeners[0];
    REQUIRE(l.routing.routes.size() == 3);
    CHECK(l.routing.routes[0].name == "api.example.com");  // its first server name
    CHECK(l.routing.routes[1].name == "b.example.com");
    CHECK(l.routing.routes[2].name == "rest");
    CHECK(l.routing.timeout == std::chrono::milliseconds(2000));
    CHECK(l.upstreams.size() == 4);
    CHECK(l.balancing.weights == std::vector<std::uint32_t>{1, 1, 2, 1});
    const auto& r = l.routing.routes;
    CHECK(r[0].names == std::vector<std::string>{"api.example.com"});  // lower case
    CHECK(r[0].suffixes == std::vector<std::string>{".svc.example.com"});
    CHECK((r[1].first == 1 && r[1].count == 2 && r[2].first == 3 && r[2].count == 1));
    CHECK(r[1].maglev != nullptr);
    CHECK(l.routing.match("x.y.svc.example.com") == 0);
    CHECK(l.routing.match("nowhere.example.com") == 2);
    const std::string d = fp::app::describe(c);
    CHECK_MESSAGE(d.find("      - {name: \"b.example.com\", sni: [\"b.example.com\"], "
                         "upstreams: [\"127.0.0.1:3\", {address: \"127.0.0.1:4\", weight: 2}]}") !=
                      std::string::npos,
                  d);
    CHECK(d.find("      - {name: \"rest\", default: true, ") != std::string::npos);
    CHECK(fp::app::describe(fp::app::parse_config(d, "g.yaml")) == d);

    const std::string up = "    routes:\n      - {default: true, upstreams: [127.0.0.1:5]}\n";
    CHECK(error_of(head + "    upstreams: [127.0.0.1:2]\n" + up) ==
          "f.yaml:4:16: listeners[0].upstreams beside routes: the upstreams go in the routes (a "
          "route with default: true takes the connections no name matches)");
    CHECK(error_of(head + "    routes: []\n") ==
          "f.yaml:4:13: listeners[0].routes must be a non-empty list of {sni: [names], "
          "upstreams: [...]} and {default: true, upstreams: [...]}");
    CHECK(error_of(head + "    routes:\n      - {upstreams: [127.0.0.1:5]}\n") ==
          "f.yaml:5:9: listeners[0].routes[0] needs sni: [names] or default: true");
    CHECK(error_of(head + up + "      - {default: true, upstreams: [127.0.0.1:6]}\n") ==
          "f.yaml:6:19: listeners[0].routes[1]: a second default route");
    CHECK(error_of(head +
                   "    routes:\n      - {sni: [a.com, \"A.com\"], upstreams: [127.0.0.1:5]}\n") ==
          "f.yaml:5:23: listeners[0].routes[0].sni: 'a.com' is in two routes");
    CHECK(error_of(head + up + "      - {sni: [\"*.default\"], upstreams: [127.0.0.1:6]}\n" +
                   "      - {name: \"*.default\", sni: [a.com], upstreams: [127.0.0.1:6]}\n") ==
          "f.yaml:7:16: listeners[0].routes[2]: route name '*.default' is used twice");
    CHECK(error_of(head + "    routes:\n      - {name: default, sni: [a.com], upstreams: "
                          "[127.0.0.1:5]}\n      - {default: true, upstreams: [127.0.0.1:6]}\n") ==
          "f.yaml:6:9: listeners[0].routes[1]: route name 'default' is used twice (name: tells "
          "them apart)");
    for (const char* bad : {"\"a..b\"", "\"a.*.b\"", "\"b.\"", "\"*\"", "\"a b\""})
        CHECK(
            error_of(head + "    routes:\n      - {sni: [" + bad + "], upstreams: [127.0.0.1:5]}\n")
                .find("is not a server name") != std::string::npos);
    CHECK(error_of(head + "    routes:\n      - {sni: [a.com]}\n") ==
          "f.yaml:5:9: listeners[0].routes[0].upstreams must be a non-empty list of addresses");
    CHECK(error_of(head + "    upstreams: [127.0.0.1:2]\n    client_hello_timeout: 1s\n") ==
          "f.yaml:5:27: listeners[0].client_hello_timeout without routes");
    CHECK(error_of(head + "    protocol: udp\n" + up) ==
          "f.yaml:6:7: listeners[0].routes: TCP listeners only (a route is picked by the TLS "
          "ClientHello)");
}

namespace {
// A name table standing in for the system's: "backend.test" -> two addresses while `up`.
struct Names {
    bool up = true;
    std::vector<fp::net::SockAddr> lookup(const std::string& host, std::uint16_t port,
                                          std::string& error) const {
        const std::string p = ":" + std::to_string(port);
        if (host == "backend.test" && up)
            return {*fp::net::parse_address("127.0.0.5" + p), *fp::net::parse_address("[::1]" + p)};
        error = "Host not found";
        return {};
    }
};
}  // namespace

TEST_CASE(
    "upstream DNS names: every address, the entry's weight; an error at start, kept at reload") {
    Names names;
    fp::app::Resolver resolver([&](const std::string& h, std::uint16_t p, std::string& e) {
        return names.lookup(h, p, e);
    });
    const std::string head = "listeners:\n  - name: a\n    listen: 127.0.0.1:1\n";
    const std::string text =
        head + "    upstreams: [127.0.0.1:2, {address: Backend.TEST:80, weight: 3}]\n";
    const auto c = parse_config(text, "f.yaml", &resolver);
    const auto& l = c.worker.listeners[0];
    REQUIRE(l.upstreams.size() == 3);
    CHECK(l.upstreams[1].str() == "127.0.0.5:80");
    CHECK(l.upstreams[2].str() == "[::1]:80");
    CHECK(l.balancing.weights == std::vector<std::uint32_t>{1, 3, 3});
    CHECK(c.notes.empty());
    // The name stops resolving: a reload keeps what it resolved to, and says so.
    names.up = false;
    const auto again = parse_config(text, "f.yaml", &resolver);
    CHECK(again.worker.listeners[0].upstreams.size() == 3);
    REQUIRE(again.notes.size() == 1);
    CHECK(again.notes[0] ==
          "upstream backend.test:80 does not resolve (Host not found): keeps 127.0.0.5:80, "
          "[::1]:80");
    // A resolver that never resolved it (a start): an error at the entry.
    fp::app::Resolver fresh([&](const std::string& h, std::uint16_t p, std::string& e) {
        return names.lookup(h, p, e);
    });
    try {
        parse_config(text, "f.yaml", &fresh);
        FAIL("a name that does not resolve at start must be an error");
    } catch (const fp::app::ConfigError& e) {
        CHECK(std::string(e.what()) ==
              "f.yaml:4:40: listeners[0].upstreams 'Backend.TEST:80' does not resolve: Host not "
              "found");
    }
    // Not a name either: the numeric address's own error.
    CHECK(error_of(head + "    upstreams: [300.1.1.1:80]\n").find("'300.1.1.1:80': ") !=
          std::string::npos);
    CHECK(error_of(head + "    upstreams: [\"bad name:80\"]\n").find("or a DNS name and a port") !=
          std::string::npos);
    CHECK(error_of(head + "    upstreams: [backend.test]\n").find("or a DNS name and a port") !=
          std::string::npos);
}

TEST_CASE("the system's resolver: localhost from /etc/hosts") {
    std::string error;
    const auto addrs = fp::app::Resolver::dns_lookup("localhost", 8080, error);
    REQUIRE_MESSAGE(!addrs.empty(), error);
    bool v4 = false;
    for (const auto& a : addrs)
        v4 |= a.str() == "127.0.0.1:8080";
    CHECK(v4);
}
