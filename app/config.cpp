#include "app/config.hpp"

#include <yaml-cpp/yaml.h>

#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <set>
#include <sstream>
#include <system_error>
#include <thread>

#include "net/base/modes.hpp"

namespace fp::app {
namespace {

constexpr std::uint64_t kMiB = 1 << 20;
constexpr std::size_t kMaxListeners = 65535;  // a connection keeps its listener in 16 bits

constexpr std::size_t kMaxConfigBytes = 1 << 20;

// "file:line:col: message". A mark yaml-cpp left unset (null: -1) points at the file's start,
// never at 0:0.
[[noreturn]] void fail(const std::string& source, const YAML::Mark& m, const std::string& msg) {
    int line = m.line < 0 ? 0 : m.line, col = m.line < 0 || m.column < 0 ? 0 : m.column;
    throw ConfigError(source + ":" + std::to_string(line + 1) + ":" + std::to_string(col + 1) +
                      ": " + msg);
}

// yaml-cpp's terse messages, said the way an operator reads them.
std::string translate(const std::string& msg) {
    if (msg == "bad conversion") return "a value has the wrong type here (expected a scalar)";
    if (msg == "bad file") return "cannot read the file";
    if (msg.rfind("invalid node", 0) == 0) return "a key or value is missing or misplaced here";
    return msg;
}

// Decimal integers only: "010" (octal to yaml-cpp) and "0x10" are refused, not read as 8 and 16.
bool plain_decimal(const std::string& t) {
    if (t.empty() || t.size() > 19) return false;
    for (char ch : t)
        if (ch < '0' || ch > '9') return false;
    return t.size() == 1 || t[0] != '0';
}

// A mapping whose keys are checked: reading marks a key known; finish() rejects the rest.
class Map {
  public:
    Map(const YAML::Node& node, const std::string& source, std::string path)
        : node_(node), source_(source), path_(std::move(path)) {
        if (!node.IsMap()) fail(source_, node.Mark(), path_ + " must be a mapping");
        std::set<std::string> seen;
        for (const auto& kv : node_) {
            if (!kv.first.IsScalar())
                fail(source_, kv.first.Mark(), "a key of " + path_ + " must be a plain name");
            if (!seen.insert(kv.first.Scalar()).second)
                fail(source_, kv.first.Mark(), "duplicate key " + name(kv.first.Scalar()));
        }
    }
    YAML::Node get(const std::string& key) {
        known_.insert(key);
        return node_[key];
    }
    template <class T>
    T scalar(const std::string& key, T fallback, T lo, T hi) {
        YAML::Node n = get(key);
        if (!n) return fallback;
        T v{};
        if (!n.IsScalar() || !plain_decimal(n.Scalar()) || !YAML::convert<T>::decode(n, v))
            fail(source_, n.Mark(), name(key) + " must be a decimal integer");
        if (v < lo || v > hi)
            fail(source_, n.Mark(),
                 name(key) + " = " + n.Scalar() + " is out of range " + std::to_string(lo) + ".." +
                     std::to_string(hi));
        return v;
    }
    std::string text(const std::string& key, const std::string& fallback, bool required = false) {
        YAML::Node n = get(key);
        if (!n) {
            if (required) fail(source_, node_.Mark(), name(key) + " is required");
            return fallback;
        }
        if (!n.IsScalar()) fail(source_, n.Mark(), name(key) + " must be a string");
        return n.Scalar();
    }
    void finish() {
        for (const auto& kv : node_)
            if (!known_.count(kv.first.Scalar()))
                fail(source_, kv.first.Mark(), "unknown key " + name(kv.first.Scalar()));
    }
    bool flag(const std::string& key, bool fallback) {
        YAML::Node n = get(key);
        bool v = fallback;
        if (n && (!n.IsScalar() || !YAML::convert<bool>::decode(n, v)))
            fail(source_, n.Mark(), name(key) + " must be true or false");
        return v;
    }
    const YAML::Node& node() const { return node_; }
    std::string name(const std::string& key) const { return path_ + "." + key; }
    const std::string& source() const { return source_; }

  private:
    YAML::Node node_;
    const std::string& source_;
    std::string path_;
    std::set<std::string> known_;
};

// A listen address (a listener's, the admin endpoint's): port 0 lets the kernel pick one (the
// ready record, --ready-file, says which).
net::SockAddr address(const YAML::Node& n, const std::string& source, const std::string& what) {
    std::string why;
    if (!n.IsScalar()) fail(source, n.Mark(), what + " must be an address string");
    auto a = net::parse_address(n.Scalar(), &why, /*any_port=*/true);
    if (!a) fail(source, n.Mark(), what + " '" + n.Scalar() + "': " + why);
    return *a;
}

net::Millis duration(Map& m, const std::string& key, net::Millis fallback, bool zero_ok = false) {
    YAML::Node n = m.get(key);
    if (!n) return fallback;
    auto d = n.IsScalar() ? parse_duration(n.Scalar()) : std::nullopt;
    if (!d || (d->count() <= 0 && !zero_ok))
        fail(m.source(), n.Mark(),
             m.name(key) + " must be a " + (zero_ok ? "" : "positive ") +
                 "duration like 250ms, 5s, 2m" + (zero_ok ? " (0s: at once)" : ""));
    return *d;
}

void parse_memory(Config& c, Map m) {
    YAML::Node arena = m.get("arena");
    if (arena) {
        auto bytes = arena.IsScalar() ? parse_size(arena.Scalar()) : std::nullopt;
        if (!bytes || *bytes % (2 * kMiB) != 0 || *bytes < 4 * kMiB ||
            *bytes > std::uint64_t{64} * 1024 * kMiB)
            fail(m.source(), arena.Mark(),
                 "memory.arena must be a size like 64MiB: a multiple of 2MiB from 4MiB to 64GiB");
        c.worker.memory.arena_bytes = *bytes;
        c.arena_mark = {arena.Mark().line, arena.Mark().column};
    }
    c.worker.memory.order = m.scalar<unsigned>("page_order", 4, 0, 9);
    c.worker.buf_ring_pages = m.scalar<unsigned>("recv_pages", 16, 1, 4096);
    c.worker.memory.hugetlb = m.flag("hugetlb", false);
    const std::size_t page = std::size_t{4096} << c.worker.memory.order;
    if (YAML::Node f = m.get("recv_fragment")) {
        auto bytes = f.IsScalar() ? parse_size(f.Scalar()) : std::nullopt;
        if (!bytes || *bytes < 4096 || *bytes > page || (*bytes & (*bytes - 1)))
            fail(m.source(), f.Mark(),
                 "memory.recv_fragment must be a power of two from 4KiB to the page size (" +
                     std::to_string(page >> 10) + "KiB)");
        c.worker.recv_fragment = std::uint32_t(*bytes);
    } else {
        // A page: a receive brings as much as on the incremental path. 16 KiB fragments cost
        // four completions and sends per loopback segment (half the throughput, 1.9x the CPU
        // per GB, README); what they saved, a stuck connection pinning less for a small
        // receive, the memory budget and collapse already bound (hostile_test.py).
        c.worker.recv_fragment = std::uint32_t(page);
    }
    m.finish();
    auto pages = c.worker.memory.arena_bytes >> (12 + c.worker.memory.order);
    if (std::size_t{c.worker.buf_ring_pages} * 2 > pages)
        fail(m.source(), m.get("recv_pages").Mark(),
             "memory.recv_pages needs at most half of the arena's " + std::to_string(pages) +
                 " pages");
}

// io_uring: {receive: auto | incremental | fragments, taskrun: auto | defer | coop | none,
// direct_descriptors: bool, send_zc: bool, bundles: bool, napi_busy_poll_us: 0-1000000,
// batch_wait_us: 0-1000}: receive
// resolved against the kernel at start; a taskrun other than auto is taken or refused; direct
// descriptors and receive bundles where the kernel has them, unless false; zero-copy sends where it
// has them, if true.
void parse_io_uring(Config& c, Map m) {
    YAML::Node r = m.get("receive");
    const std::string v = m.text("receive", "auto");
    if (v == "auto")
        c.worker.recv_path = net::RecvPath::kAuto;
    else if (v == "incremental")
        c.worker.recv_path = net::RecvPath::kIncremental;
    else if (v == "fragments")
        c.worker.recv_path = net::RecvPath::kFragments;
    else
        fail(m.source(), r.Mark(), "io_uring.receive must be auto, incremental or fragments");
    const std::string t = m.text("taskrun", "auto");
    for (auto tr :
         {net::TaskRun::kAuto, net::TaskRun::kDefer, net::TaskRun::kCoop, net::TaskRun::kNone})
        if (t == net::taskrun_name(tr)) c.worker.taskrun = tr;
    if (t != net::taskrun_name(c.worker.taskrun))
        fail(m.source(), m.get("taskrun").Mark(),
             "io_uring.taskrun must be auto, defer, coop or none");
    c.worker.direct_descriptors = m.flag("direct_descriptors", true);
    c.worker.send_zc = m.flag("send_zc", false);
    c.worker.bundles = m.flag("bundles", true);
    c.worker.napi_busy_poll_us = m.scalar<std::uint32_t>("napi_busy_poll_us", 0, 0, 1000000);
    c.worker.batch_wait_us = m.scalar<std::uint32_t>("batch_wait_us", 50, 0, 1000);
    m.finish();
}

struct Common {
    std::string name, protocol;
    net::SockAddr listen;
    std::vector<net::SockAddr> upstreams;
    net::Balancing balancing;
    net::Routing routing;
    YAML::Mark routes_mark;
    bool share_port = false;
};

net::Balance parse_balance(Map& m) {
    const std::string b = m.text("balance", "round_robin");
    for (auto v : {net::Balance::kRoundRobin, net::Balance::kLeastConn, net::Balance::kRandom2,
                   net::Balance::kSourceHash})
        if (b == net::balance_name(v)) return v;
    fail(m.source(), m.get("balance").Mark(),
         m.name("balance") + " '" + b +
             "' is not one of round_robin, least_conn, random2, source_hash");
}

// A server name as routes take it: lower case letters, digits, '-' and '_' in labels of 1 to 63
// bytes, at most 253 in all, no trailing dot.
bool host_name(const std::string& n) {
    if (n.empty() || n.size() > 253) return false;
    std::size_t label = 0;
    for (char ch : n) {
        if (ch == '.') {
            if (label == 0) return false;
            label = 0;
            continue;
        }
        const bool ok =
            (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_';
        if (!ok || ++label > 63) return false;
    }
    return label > 0;
}

// An upstream's addresses: a numeric address, or a DNS name with a port and every address it
// resolves to (resolver.hpp).
std::vector<net::SockAddr> upstream_addresses(const YAML::Node& n, const std::string& source,
                                              const std::string& what, Resolver& resolver) {
    if (!n.IsScalar()) fail(source, n.Mark(), what + " must be an address string");
    const std::string& text = n.Scalar();
    std::string why;
    if (auto a = net::parse_address(text, &why)) return {*a};
    const auto colon = text.rfind(':');
    std::string host = colon == std::string::npos ? "" : text.substr(0, colon);
    std::transform(host.begin(), host.end(), host.begin(),
                   [](unsigned char ch) { return char(std::tolower(ch)); });
    unsigned port = 0;
    bool port_ok = false;
    if (colon != std::string::npos) {
        const char* p = text.data() + colon + 1;
        const char* end = text.data() + text.size();
        port_ok =
            p != end && std::from_chars(p, end, port).ptr == end && port >= 1 && port <= 65535;
    }
    const bool numeric = host.find_first_not_of("0123456789.") == std::string::npos;
    if (!port_ok || numeric || !host_name(host))
        fail(source, n.Mark(), what + " '" + text + "': " + why + " (or a DNS name and a port)");
    std::string error;
    auto addrs = resolver.resolve(host, std::uint16_t(port), error);
    if (addrs.empty()) fail(source, n.Mark(), what + " '" + text + "' does not resolve: " + error);
    return addrs;
}

// A list of upstreams (`address` or {address, weight}), appended to the listener's.
void parse_upstream_list(Map& m, Common& c, Resolver& resolver) {
    const std::string& source = m.source();
    YAML::Node ups = m.get("upstreams");
    if (!ups || !ups.IsSequence() || ups.size() == 0)
        fail(source, ups ? ups.Mark() : m.node().Mark(),
             m.name("upstreams") + " must be a non-empty list of addresses");
    for (const auto& entry : ups) {
        std::uint32_t weight = 1;
        YAML::Node addr;      // (a YAML::Node assigned to another writes through: never reassigned)
        if (entry.IsMap()) {  // {address: A, weight: W}
            Map um(entry, source, m.name("upstreams") + "[]");
            addr.reset(um.get("address"));
            if (!addr) fail(source, entry.Mark(), m.name("upstreams") + ": address is required");
            weight = um.scalar<std::uint32_t>("weight", 1, 1, 256);
            um.finish();
        } else {
            addr.reset(entry);
        }
        const YAML::Node& u = addr;
        for (const net::SockAddr& a :
             upstream_addresses(u, source, m.name("upstreams"), resolver)) {
            if (a.unspecified())
                fail(source, u.Mark(),
                     m.name("upstreams") + " " + a.str() +
                         ": an unspecified address (0.0.0.0, ::) is not an upstream");
            if (a == c.listen)
                fail(source, u.Mark(),
                     m.name("upstreams") + " " + a.str() +
                         " is the listener's own address: every connection would loop back");
            if (c.upstreams.size() >= 4096)
                fail(source, u.Mark(), m.name("upstreams") + ": more than 4096 upstreams");
            c.balancing.weights.push_back(weight);
            c.upstreams.push_back(a);
        }
    }
}

std::shared_ptr<const net::MaglevTable> maglev(const Common& c, std::size_t first,
                                               std::size_t count) {
    std::vector<std::string> names;
    for (std::size_t i = first; i < first + count; ++i)
        names.push_back(c.upstreams[i].str());
    return std::make_shared<const net::MaglevTable>(
        names,
        std::vector<std::uint32_t>(c.balancing.weights.begin() + std::ptrdiff_t(first),
                                   c.balancing.weights.begin() + std::ptrdiff_t(first + count)));
}

// routes: [{sni: [names], upstreams: [...]}, ..., {default: true, upstreams: [...]}]: each
// route's upstreams are a run of the listener's list.
void parse_routes(Map& m, const YAML::Node& routes, Common& c, Resolver& resolver) {
    const std::string& source = m.source();
    if (!routes.IsSequence() || routes.size() == 0)
        fail(source, routes.Mark(),
             m.name("routes") +
                 " must be a non-empty list of {sni: [names], upstreams: [...]} and "
                 "{default: true, upstreams: [...]}");
    std::set<std::string> seen, names;
    for (std::size_t i = 0; i < routes.size(); ++i) {
        const YAML::Node& node = routes[i];
        const std::string what = m.name("routes") + "[" + std::to_string(i) + "]";
        if (!node.IsMap()) fail(source, node.Mark(), what + " must be a mapping");
        Map rm(node, source, what);
        net::Route r;
        r.name = rm.text("name", "");
        r.fallback = rm.flag("default", false);
        if (r.fallback && c.routing.fallback() >= 0)
            fail(source, rm.get("default").Mark(), what + ": a second default route");
        if (YAML::Node sni = rm.get("sni")) {
            if (!sni.IsSequence() || sni.size() == 0)
                fail(source, sni.Mark(), rm.name("sni") + " must be a non-empty list of names");
            for (const auto& e : sni) {
                std::string n = e.IsScalar() ? e.Scalar() : "";
                std::transform(n.begin(), n.end(), n.begin(),
                               [](unsigned char ch) { return char(std::tolower(ch)); });
                const bool wild = n.starts_with("*.");
                if (!host_name(wild ? n.substr(2) : n))
                    fail(source, e.Mark(),
                         rm.name("sni") + ": '" + (e.IsScalar() ? e.Scalar() : "") +
                             "' is not a server name (letters, digits, '-' and '_' in labels "
                             "between dots; a wildcard only as a leading '*.')");
                if (!seen.insert(n).second)
                    fail(source, e.Mark(), rm.name("sni") + ": '" + n + "' is in two routes");
                if (wild)
                    r.suffixes.push_back(n.substr(1));
                else
                    r.names.push_back(n);
            }
        } else if (!r.fallback) {
            fail(source, node.Mark(), what + " needs sni: [names] or default: true");
        }
        const bool named = !r.name.empty();
        if (!named)
            r.name = !r.names.empty()      ? r.names[0]
                     : !r.suffixes.empty() ? "*" + r.suffixes[0]
                                           : "default";
        if (!names.insert(r.name).second)
            fail(source, named ? rm.get("name").Mark() : node.Mark(),
                 what + ": route name '" + r.name + "' is used twice" +
                     (named ? "" : " (name: tells them apart)"));
        r.first = std::uint16_t(c.upstreams.size());
        parse_upstream_list(rm, c, resolver);
        r.count = std::uint16_t(c.upstreams.size() - r.first);
        rm.finish();
        c.routing.routes.push_back(std::move(r));
    }
}

Common parse_common(Map& m, const YAML::Node& node, const std::string& source, Resolver& resolver) {
    Common c;
    c.name = m.text("name", "", true);
    c.protocol = m.text("protocol", "tcp");
    if (c.protocol != "tcp" && c.protocol != "udp")
        fail(source, m.get("protocol").Mark(),
             m.name("protocol") + " '" + c.protocol + "' is not supported (tcp or udp)");
    YAML::Node listen = m.get("listen");
    if (!listen) fail(source, node.Mark(), m.name("listen") + " is required");
    c.listen = address(listen, source, m.name("listen"));
    c.balancing.balance = parse_balance(m);
    if (YAML::Node routes = m.get("routes")) {
        if (YAML::Node ups = m.get("upstreams"))
            fail(source, ups.Mark(),
                 m.name("upstreams") +
                     " beside routes: the upstreams go in the routes (a route with "
                     "default: true takes the connections no name matches)");
        c.routes_mark = routes.Mark();
        parse_routes(m, routes, c, resolver);
    } else {
        parse_upstream_list(m, c, resolver);
    }
    if (c.balancing.balance == net::Balance::kSourceHash) {
        c.balancing.maglev = maglev(c, 0, c.upstreams.size());
        for (net::Route& r : c.routing.routes)
            r.maglev = maglev(c, r.first, r.count);
    }
    c.share_port = m.flag("share_port", false);
    if (c.share_port && c.listen.port() == 0)
        fail(source, listen.Mark(),
             m.name("listen") + ": share_port needs a port (0 is a new port of the kernel's)");
    return c;
}

// allow: [CIDR, ...] and deny: [CIDR, ...] (or trusted: [...] of accept_proxy): null when
// none is there.
std::shared_ptr<const net::CidrList> parse_acl(Map& m, std::initializer_list<const char*> keys = {
                                                           "allow", "deny"}) {
    auto list = std::make_shared<net::CidrList>();
    for (const char* key : keys) {
        YAML::Node n = m.get(key);
        if (!n) continue;
        if (!n.IsSequence() || n.size() == 0)
            fail(m.source(), n.Mark(), m.name(key) + " must be a non-empty list of CIDRs");
        for (const auto& e : n) {
            net::Cidr c;
            if (!e.IsScalar() || !net::Cidr::parse(e.Scalar(), c))
                fail(m.source(), e.Mark(),
                     m.name(key) + ": '" + (e.IsScalar() ? e.Scalar() : std::string("?")) +
                         "' is not an address or CIDR (10.0.0.0/8, 2001:db8::/32)");
            list->add(c, std::string(key) != "deny");
        }
    }
    if (list->empty()) return nullptr;
    return list;
}

// new_connections_per_source: {rate: 50/s, burst: 100}  (rate: N/s or N/m)
net::RateLimit parse_rate(Map& m) {
    net::RateLimit r;
    YAML::Node n = m.get("new_connections_per_source");
    if (!n) return r;
    Map rm(n, m.source(), m.name("new_connections_per_source"));
    const std::string text = rm.text("rate", "", true);
    const auto slash = text.find('/');
    const std::string num = text.substr(0, slash),
                      unit = slash == text.npos ? "" : text.substr(slash);
    std::uint32_t v = 0;
    auto [end, ec] = std::from_chars(num.data(), num.data() + num.size(), v);
    if (ec != std::errc() || end != num.data() + num.size() || v == 0 ||
        (unit != "/s" && unit != "/m"))
        fail(m.source(), rm.get("rate").Mark(),
             rm.name("rate") + " '" + text + "' must be N/s or N/m, N > 0");
    if (v > 1000000)
        fail(m.source(), rm.get("rate").Mark(), rm.name("rate") + " is at most 1000000/s");
    r.count = v;
    r.period_ms = unit == "/s" ? 1000 : 60000;
    r.burst = rm.scalar<std::uint32_t>("burst", v, 1, 1000000);
    rm.finish();
    return r;
}

net::Keepalive parse_keepalive(Map& m) {
    net::Keepalive k;
    YAML::Node n = m.get("tcp_keepalive");
    if (!n) return k;
    Map km(n, m.source(), m.name("tcp_keepalive"));
    auto seconds = [&](const char* key, int fallback) {
        const auto ms = duration(km, key, net::Millis(fallback * 1000));
        if (ms.count() < 1000 || ms.count() % 1000)
            fail(m.source(), km.get(key).Mark(), km.name(key) + " must be whole seconds, >= 1s");
        return int(ms.count() / 1000);
    };
    k.idle_s = seconds("idle", k.idle_s);
    k.interval_s = seconds("interval", k.interval_s);
    k.count = int(km.scalar<std::uint32_t>("count", std::uint32_t(k.count), 1, 127));
    const std::string side = km.text("side", "both");
    if (side != "both" && side != "client" && side != "upstream")
        fail(m.source(), km.get("side").Mark(),
             km.name("side") + " must be both, client or upstream");
    k.client = side != "upstream";
    k.upstream = side != "client";
    km.finish();
    return k;
}

// TLV types by the specification's names (net::pp2), for pass_tlvs and --check.
constexpr std::pair<const char*, std::uint8_t> kTlvNames[] = {
    {"alpn", net::pp2::kAlpn}, {"authority", net::pp2::kAuthority},
    {"noop", net::pp2::kNoop}, {"unique_id", net::pp2::kUniqueId},
    {"ssl", net::pp2::kSsl},   {"netns", net::pp2::kNetns}};

// A TLV type: a name of kTlvNames, or a number 0..255 (decimal or 0x hex).
std::optional<std::uint8_t> tlv_type(const std::string& s) {
    for (const auto& [name, type] : kTlvNames)
        if (s == name) return type;
    const bool hex = s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X');
    unsigned v = 0;
    const char* end = s.data() + s.size();
    const auto [p, ec] = std::from_chars(s.data() + (hex ? 2 : 0), end, v, hex ? 16 : 10);
    if (s.empty() || ec != std::errc{} || p != end || v > 255) return std::nullopt;
    return std::uint8_t(v);
}

// send_proxy: v1 | v2, or {version: v2, pass_tlvs: all | [type, ...], crc32c: true}: the TLVs
// of the accepted PROXY header (accept_proxy) that go on to the upstream, and a checksum.
void parse_send_proxy(net::TcpListenerSettings& l, const YAML::Node& sp, Map& m) {
    const std::string& source = m.source();
    const std::string key = m.name("send_proxy");
    auto version = [&](const YAML::Node& v, const std::string& name) {
        const std::string s = v.IsScalar() ? v.Scalar() : "";
        if (s != "v1" && s != "v2") fail(source, v.Mark(), name + " must be v1 or v2");
        l.send_proxy = s == "v1" ? 1 : 2;
    };
    if (!sp.IsMap()) return version(sp, key);
    Map sm(sp, source, key);
    YAML::Node v = sm.get("version");
    if (!v) fail(source, sp.Mark(), key + ": version (v1 or v2) is required");
    version(v, sm.name("version"));
    if (YAML::Node crc = sm.get("crc32c")) {
        l.proxy_crc32c = sm.flag("crc32c", false);
        if (l.proxy_crc32c && l.send_proxy != 2)
            fail(source, crc.Mark(), sm.name("crc32c") + ": a v2 TLV (version: v2)");
    }
    if (YAML::Node p = sm.get("pass_tlvs")) {
        const std::string name = sm.name("pass_tlvs");
        if (l.send_proxy != 2) fail(source, p.Mark(), name + ": v2 TLVs (version: v2)");
        if (!l.accept_proxy.enabled || !l.accept_proxy.v2)
            fail(source, p.Mark(), name + ": TLVs come from accept_proxy (with v2)");
        if (p.IsScalar() && p.Scalar() == "all") {
            l.pass_tlvs.set();
        } else if (p.IsSequence()) {
            for (const auto& e : p) {
                const std::string s = e.IsScalar() ? e.Scalar() : "";
                const auto t = tlv_type(s);
                if (!t)
                    fail(source, e.Mark(),
                         name + ": '" + s +
                             "' is not a TLV type (alpn, authority, noop, unique_id, ssl, "
                             "netns, or 0..255)");
                if (*t == net::pp2::kCrc32c)
                    fail(source, e.Mark(),
                         name +
                             ": a CRC32C is of its own header, never passed on (crc32c: true "
                             "adds one)");
                l.pass_tlvs.set(*t);
            }
        } else {
            fail(source, p.Mark(), name + " must be all or a list of TLV types");
        }
    }
    sm.finish();
}

net::TcpListenerSettings parse_tcp(Map& m, Common c, const Config& cfg) {
    const std::string& source = m.source();
    net::TcpListenerSettings l;
    l.name = std::move(c.name);
    l.listen = c.listen;
    l.upstreams = std::move(c.upstreams);
    l.balancing = std::move(c.balancing);
    l.routing = std::move(c.routing);
    l.share_port = c.share_port;
    if (l.routing.enabled())
        l.routing.timeout = duration(m, "client_hello_timeout", l.routing.timeout);
    else if (YAML::Node t = m.get("client_hello_timeout"))
        fail(source, t.Mark(), m.name("client_hello_timeout") + " without routes");
    if (YAML::Node t = m.get("timeouts")) {
        Map tm(t, source, m.name("timeouts"));
        l.connect_timeout = duration(tm, "connect", l.connect_timeout);
        l.idle_timeout = duration(tm, "idle", l.idle_timeout);
        l.send_stall_timeout = duration(tm, "send_stall", l.send_stall_timeout);
        tm.finish();
    }
    l.max_connections = m.scalar<std::uint32_t>("max_connections", 10000, 1, 1000000);
    // One connection's queue may never take more than 1/8 of its worker's arena (and under
    // memory pressure it gets far less: net/tcp/memory_budget.hpp).
    const std::uint32_t cap_kib =
        std::uint32_t(std::min<std::uint64_t>(cfg.worker.memory.arena_bytes / 8 / 1024, 1 << 20));
    l.max_inflight_bytes = m.scalar<std::uint32_t>("max_inflight_kib", 1024, 16, cap_kib) * 1024;
    l.policy.acl = parse_acl(m);
    l.policy.max_connections = m.scalar<std::uint32_t>("max_connections_per_source", 0, 0, 1000000);
    l.policy.rate = parse_rate(m);
    l.keepalive = parse_keepalive(m);
    if (YAML::Node h = m.get("health_check")) {
        Map hm(h, source, m.name("health_check"));
        l.health.enabled = true;
        l.health.interval = duration(hm, "interval", l.health.interval);
        l.health.timeout = duration(hm, "timeout", l.health.timeout);
        l.health.rise = hm.scalar<std::uint32_t>("rise", l.health.rise, 1, 100);
        l.health.fall = hm.scalar<std::uint32_t>("fall", l.health.fall, 1, 100);
        hm.finish();
    }
    if (YAML::Node ap = m.get("accept_proxy")) {
        Map am(ap, source, m.name("accept_proxy"));
        l.accept_proxy.enabled = true;
        if (YAML::Node v = am.get("versions")) {
            if (!v.IsSequence() || v.size() == 0)
                fail(source, v.Mark(), am.name("versions") + " must be a list of v1, v2");
            l.accept_proxy.v1 = l.accept_proxy.v2 = false;
            for (const auto& e : v) {
                const std::string s = e.IsScalar() ? e.Scalar() : "";
                if (s != "v1" && s != "v2")
                    fail(source, e.Mark(), am.name("versions") + ": '" + s + "' is not v1 or v2");
                (s == "v1" ? l.accept_proxy.v1 : l.accept_proxy.v2) = true;
            }
        }
        l.accept_proxy.trusted = parse_acl(am, {"trusted"});
        l.accept_proxy.timeout = duration(am, "timeout", l.accept_proxy.timeout);
        am.finish();
    }
    if (YAML::Node sp = m.get("send_proxy")) parse_send_proxy(l, sp, m);
    return l;
}

net::UdpListenerSettings parse_udp(Map& m, Common c) {
    if (c.routing.enabled())
        fail(m.source(), c.routes_mark,
             m.name("routes") + ": TCP listeners only (a route is picked by the TLS ClientHello)");
    net::UdpListenerSettings l;
    l.name = std::move(c.name);
    l.listen = c.listen;
    l.upstreams = std::move(c.upstreams);
    l.balancing = std::move(c.balancing);
    l.share_port = c.share_port;
    l.acl = parse_acl(m);
    l.session_timeout = duration(m, "session_timeout", l.session_timeout);
    l.max_sessions = m.scalar<std::uint32_t>("max_sessions", 10000, 1, 1000000);
    l.max_sessions_per_source = m.scalar<std::uint32_t>("max_sessions_per_source", 256, 1, 1000000);
    l.max_responses = m.scalar<std::uint32_t>("max_responses", 0, 0, 1000000);
    return l;
}

void parse_listener(Config& cfg, const YAML::Node& node, const std::string& source, std::size_t i,
                    Resolver& resolver) {
    Map m(node, source, "listeners[" + std::to_string(i) + "]");
    Common c = parse_common(m, node, source, resolver);
    for (const auto& prev : cfg.worker.listeners)
        if (prev.name == c.name)
            fail(source, node["name"].Mark(), "listener name '" + c.name + "' is used twice");
    for (const auto& prev : cfg.worker.udp_listeners)
        if (prev.name == c.name)
            fail(source, node["name"].Mark(), "listener name '" + c.name + "' is used twice");
    auto taken = [&](const auto& list) {
        for (const auto& prev : list)
            if (prev.listen == c.listen && c.listen.port() != 0)  // (port 0: one each)
                fail(source, node["listen"].Mark(),
                     c.protocol + " listen address " + c.listen.str() +
                         " is already used by listener '" + prev.name + "'");
    };
    if (c.protocol == "tcp") {
        taken(cfg.worker.listeners);
        cfg.worker.listeners.push_back(parse_tcp(m, std::move(c), cfg));
    } else {
        taken(cfg.worker.udp_listeners);
        cfg.worker.udp_listeners.push_back(parse_udp(m, std::move(c)));
    }
    m.finish();
}

unsigned parse_workers(const YAML::Node& n, const std::string& source) {
    unsigned cores = std::max(1u, std::thread::hardware_concurrency());
    if (!n || (n.IsScalar() && n.Scalar() == "auto")) return cores;
    unsigned w = 0;
    if (!n.IsScalar() || !plain_decimal(n.Scalar()) || !YAML::convert<unsigned>::decode(n, w) ||
        w < 1 || w > 256)
        fail(source, n.Mark(), "workers must be 'auto' or 1..256");
    return w;
}

}  // namespace

std::optional<std::chrono::milliseconds> parse_duration(std::string_view t) {
    std::uint64_t v = 0;
    auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
    if (ec != std::errc() || end == t.data()) return std::nullopt;
    std::string_view unit(end, static_cast<std::size_t>(t.data() + t.size() - end));
    std::uint64_t ms = 0;
    if (unit == "ms")
        ms = v;
    else if (unit == "s")
        ms = v * 1000;
    else if (unit == "m")
        ms = v * 60000;
    else if (unit == "h")
        ms = v * 3600000;
    else
        return std::nullopt;
    if (v > 1000000000) return std::nullopt;
    return std::chrono::milliseconds(ms);
}

std::optional<std::uint64_t> parse_size(std::string_view t) {
    std::uint64_t v = 0;
    auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
    if (ec != std::errc() || end == t.data()) return std::nullopt;
    std::string_view unit(end, static_cast<std::size_t>(t.data() + t.size() - end));
    unsigned shift = 0;
    if (unit.empty() || unit == "B")
        shift = 0;
    else if (unit == "KiB")
        shift = 10;
    else if (unit == "MiB")
        shift = 20;
    else if (unit == "GiB")
        shift = 30;
    else
        return std::nullopt;
    if (v > (std::uint64_t{1} << (50 - shift))) return std::nullopt;
    return v << shift;
}

Config parse_config(const std::string& text, const std::string& source, Resolver* resolver) {
    Resolver once;  // (no resolver given: nothing to keep from an earlier resolve)
    Resolver& r = resolver ? *resolver : once;
    YAML::Node root;
    try {
        root = YAML::Load(text);
    } catch (const YAML::Exception& e) {
        fail(source, e.mark, translate(e.msg));
    }
    Config c;
    c.source = source;
    if (!root || root.IsNull()) throw ConfigError(source + ":1:1: the configuration is empty");
    try {
        Map m(root, source, "config");
        c.workers = parse_workers(m.get("workers"), source);
        c.drain_timeout = duration(m, "drain_timeout", c.drain_timeout, true);
        if (YAML::Node mem = m.get("memory")) parse_memory(c, Map(mem, source, "memory"));
        if (YAML::Node io = m.get("io_uring")) parse_io_uring(c, Map(io, source, "io_uring"));
        if (YAML::Node b = m.get("backend")) {
            const std::string v = b.IsScalar() ? b.Scalar() : "";
            if (v == "auto")
                c.worker.backend = net::Backend::kAuto;
            else if (v == "io_uring")
                c.worker.backend = net::Backend::kIoUring;
            else if (v == "epoll")
                c.worker.backend = net::Backend::kEpoll;
            else
                fail(source, b.Mark(), "backend must be auto, io_uring or epoll");
            if (c.worker.backend == net::Backend::kEpoll &&
                c.worker.recv_path == net::RecvPath::kIncremental)
                fail(source, b.Mark(),
                     "backend: epoll receives into fragments (io_uring.receive: incremental is "
                     "the kernel's)");
        }
        c.worker.udp_gso = m.flag("udp_gso", true);
        if (YAML::Node a = m.get("admin")) {
            Map am(a, source, "admin");
            YAML::Node listen = am.get("listen");
            if (!listen) fail(source, a.Mark(), "admin.listen is required");
            c.admin = address(listen, source, "admin.listen");
            am.finish();
        }
        if (YAML::Node u = m.get("user")) {
            if (!u.IsScalar() || u.Scalar().empty()) fail(source, u.Mark(), "user must be a name");
            if (!::getpwnam(u.Scalar().c_str()))
                fail(source, u.Mark(), "user: no such user: " + u.Scalar());
            c.user = u.Scalar();
        }
        if (YAML::Node a = m.get("access_log")) {
            Map am(a, source, "access_log");
            AccessLogSettings log;
            log.path = am.text("path", "", true);
            if (log.path.empty()) fail(source, a.Mark(), "access_log.path must not be empty");
            const std::string format = am.text("format", "json");
            if (format != "json" && format != "text")
                fail(source, am.get("format").Mark(), "access_log.format must be json or text");
            log.json = format == "json";
            am.finish();
            c.access_log = log;
        }
        YAML::Node ls = m.get("listeners");
        if (!ls || !ls.IsSequence() || ls.size() == 0)
            fail(source, ls ? ls.Mark() : root.Mark(), "listeners must be a non-empty list");
        if (ls.size() > kMaxListeners)
            fail(source, ls.Mark(),
                 "listeners: at most " + std::to_string(kMaxListeners) + " are supported");
        for (std::size_t i = 0; i < ls.size(); ++i)
            parse_listener(c, ls[i], source, i, r);
        m.finish();
    } catch (const YAML::Exception& e) {
        fail(source, e.mark, translate(e.msg));
    }
    c.notes = r.take_notes();
    return c;
}

// Reads at most kMaxConfigBytes: `-c /dev/zero` or a stray 10 MB file is refused, not parsed.
Config load_config(const std::string& path, Resolver* resolver) {
    auto error = [&](const std::string& why) { return ConfigError(path + ":1:1: " + why); };
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        throw error("cannot open the configuration file: " +
                    std::error_code(errno, std::generic_category()).message());
    struct stat st {};
    if (::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        ::close(fd);
        throw error("cannot read the configuration file: it is a directory");
    }
    std::string text;
    char buf[65536];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0 && text.size() <= kMaxConfigBytes)
        text.append(buf, std::size_t(n));
    int err = errno;
    ::close(fd);
    if (n < 0)
        throw error("cannot read the configuration file: " +
                    std::error_code(err, std::generic_category()).message());
    if (text.size() > kMaxConfigBytes)
        throw error("the configuration file is larger than " +
                    std::to_string(kMaxConfigBytes >> 20) + " MiB");
    return parse_config(text, path, resolver);
}

// A YAML double-quoted scalar: what --check prints loads back as the same value (names with '#'
// or ':', IPv6 addresses in brackets).
std::string quote(const std::string& v) {
    std::string q = "\"";
    for (unsigned char ch : v) {
        if (ch == '"' || ch == '\\') {
            q += '\\';
            q += char(ch);
        } else if (ch < 0x20 || ch == 0x7f) {
            char hex[8];
            std::snprintf(hex, sizeof hex, "\\x%02x", ch);
            q += hex;
        } else {
            q += char(ch);
        }
    }
    return q + "\"";
}

// "[B, {address: C, weight: 2}]": upstreams first..first+count of a listener.
template <class Listener>
void describe_upstreams(std::ostream& o, const Listener& l, std::size_t first, std::size_t count) {
    o << "[";
    for (std::size_t i = first; i < first + count; ++i) {
        const std::uint32_t w = l.balancing.weights.empty() ? 1 : l.balancing.weights[i];
        o << (i > first ? ", " : "");
        if (w == 1)
            o << quote(l.upstreams[i].str());
        else
            o << "{address: " << quote(l.upstreams[i].str()) << ", weight: " << w << "}";
    }
    o << "]";
}

bool has_routes(const net::TcpListenerSettings& l) {
    return l.routing.enabled();
}
bool has_routes(const net::UdpListenerSettings&) {
    return false;
}
void describe_routes(std::ostream&, const net::UdpListenerSettings&) {}

void describe_routes(std::ostream& o, const net::TcpListenerSettings& l) {
    o << "    client_hello_timeout: " << l.routing.timeout.count() << "ms\n    routes:";
    for (const net::Route& r : l.routing.routes) {
        o << "\n      - {name: " << quote(r.name) << ", ";
        if (!r.names.empty() || !r.suffixes.empty()) {
            o << "sni: [";
            const char* sep = "";
            for (const auto& n : r.names) {
                o << sep << quote(n);
                sep = ", ";
            }
            for (const auto& s : r.suffixes) {
                o << sep << quote("*" + s);
                sep = ", ";
            }
            o << "], ";
        }
        if (r.fallback) o << "default: true, ";
        o << "upstreams: ";
        describe_upstreams(o, l, r.first, r.count);
        o << "}";
    }
}

// "  - name: N\n    protocol: P\n    listen: A\n    upstreams: [B, C]\n" for --check.
template <class Listener>
void describe_common(std::ostream& o, const Listener& l, const char* protocol) {
    o << "  - name: " << quote(l.name) << "\n    protocol: " << protocol
      << "\n    listen: " << quote(l.listen.str()) << "\n";
    if (has_routes(l)) {
        describe_routes(o, l);
    } else {
        o << "    upstreams: ";
        describe_upstreams(o, l, 0, l.upstreams.size());
    }
    o << "\n    balance: " << net::balance_name(l.balancing.balance) << "\n";
    if (l.share_port) o << "    share_port: true\n";
}

void describe_send_proxy(std::ostream& o, const net::TcpListenerSettings& l) {
    o << "    send_proxy: ";
    if (l.pass_tlvs.none() && !l.proxy_crc32c) {
        o << "v" << int(l.send_proxy) << "\n";
        return;
    }
    o << "{version: v" << int(l.send_proxy);
    if (l.pass_tlvs.all()) {
        o << ", pass_tlvs: all";
    } else if (l.pass_tlvs.any()) {
        o << ", pass_tlvs: [";
        const char* sep = "";
        for (unsigned t = 0; t < 256; ++t) {
            if (!l.pass_tlvs.test(t)) continue;
            o << sep;
            sep = ", ";
            const auto* named = std::find_if(std::begin(kTlvNames), std::end(kTlvNames),
                                             [&](const auto& e) { return e.second == t; });
            if (named != std::end(kTlvNames))
                o << named->first;
            else
                o << t;
        }
        o << "]";
    }
    if (l.proxy_crc32c) o << ", crc32c: true";
    o << "}\n";
}

void describe_acl(std::ostream& o, const net::CidrList* acl) {
    if (!acl) return;
    for (bool allow : {true, false}) {
        std::string items;
        for (const auto& r : acl->rules())
            if (r.allow == allow) items += (items.empty() ? "" : ", ") + quote(r.cidr.str());
        if (!items.empty()) o << "    " << (allow ? "allow" : "deny") << ": [" << items << "]\n";
    }
}

std::string describe(const Config& c) {
    std::ostringstream o;
    const auto& w = c.worker;
    o << "workers: " << c.workers << "\n"
      << "drain_timeout: " << c.drain_timeout.count() << "ms\n";
    if (c.admin) o << "admin: {listen: " << quote(c.admin->str()) << "}\n";
    if (!c.user.empty()) o << "user: " << quote(c.user) << "\n";
    if (c.access_log)
        o << "access_log: {path: " << quote(c.access_log->path)
          << ", format: " << (c.access_log->json ? "json" : "text") << "}\n";
    o << "memory: {arena: " << (w.memory.arena_bytes >> 20) << "MiB, page_order: " << w.memory.order
      << ", recv_pages: " << w.buf_ring_pages << ", recv_fragment: " << (w.recv_fragment >> 10)
      << "KiB, hugetlb: " << (w.memory.hugetlb ? "true" : "false") << "}\n"
      << "backend: " << net::backend_name(w.backend) << "\n"
      << "io_uring: {receive: " << net::recv_path_name(w.recv_path)
      << ", taskrun: " << net::taskrun_name(w.taskrun)
      << ", direct_descriptors: " << (w.direct_descriptors ? "true" : "false")
      << ", send_zc: " << (w.send_zc ? "true" : "false")
      << ", bundles: " << (w.bundles ? "true" : "false")
      << ", napi_busy_poll_us: " << w.napi_busy_poll_us << ", batch_wait_us: " << w.batch_wait_us
      << "}\n"
      << "udp_gso: " << (w.udp_gso ? "true" : "false") << "\nlisteners:\n";
    for (const auto& l : w.listeners) {
        describe_common(o, l, "tcp");
        o << "    timeouts: {connect: " << l.connect_timeout.count()
          << "ms, idle: " << l.idle_timeout.count()
          << "ms, send_stall: " << l.send_stall_timeout.count()
          << "ms}\n    max_connections: " << l.max_connections
          << "\n    max_inflight_kib: " << l.max_inflight_bytes / 1024 << "\n";
        describe_acl(o, l.policy.acl.get());
        if (l.policy.max_connections)
            o << "    max_connections_per_source: " << l.policy.max_connections << "\n";
        if (const auto& r = l.policy.rate; r.count)
            o << "    new_connections_per_source: {rate: " << r.count
              << (r.period_ms == 1000 ? "/s" : "/m") << ", burst: " << r.burst << "}\n";
        if (l.send_proxy) describe_send_proxy(o, l);
        if (const auto& ap = l.accept_proxy; ap.enabled) {
            o << "    accept_proxy: {versions: [" << (ap.v1 ? "v1" : "")
              << (ap.v1 && ap.v2 ? ", " : "") << (ap.v2 ? "v2" : "") << "]";
            if (ap.trusted) {
                o << ", trusted: [";
                const char* sep = "";
                for (const auto& r : ap.trusted->rules()) {
                    o << sep << quote(r.cidr.str());
                    sep = ", ";
                }
                o << "]";
            }
            o << ", timeout: " << ap.timeout.count() << "ms}\n";
        }
        if (const auto& h = l.health; h.enabled)
            o << "    health_check: {interval: " << h.interval.count()
              << "ms, timeout: " << h.timeout.count() << "ms, rise: " << h.rise
              << ", fall: " << h.fall << "}\n";
        const auto& k = l.keepalive;
        if (k.client || k.upstream)
            o << "    tcp_keepalive: {idle: " << k.idle_s << "s, interval: " << k.interval_s
              << "s, count: " << k.count << ", side: "
              << (k.client && k.upstream ? "both"
                  : k.client             ? "client"
                                         : "upstream")
              << "}\n";
    }
    for (const auto& l : w.udp_listeners) {
        describe_common(o, l, "udp");
        o << "    session_timeout: " << l.session_timeout.count()
          << "ms\n    max_sessions: " << l.max_sessions
          << "\n    max_sessions_per_source: " << l.max_sessions_per_source
          << "\n    max_responses: " << l.max_responses << "\n";
        describe_acl(o, l.acl.get());
    }
    return o.str();
}

// What the workers can take at most: their arenas, the descriptor tables, the UDP pools. Refused
// when it exceeds what this process can have (RAM, or its cgroup's memory.max): such a config
// would be OOM-killed under load without a message.
namespace {

std::uint64_t meminfo_total() {
    std::FILE* f = std::fopen("/proc/meminfo", "r");
    if (!f) return 0;
    unsigned long long kib = 0;
    char line[256];
    while (std::fgets(line, sizeof line, f))
        if (std::sscanf(line, "MemTotal: %llu kB", &kib) == 1) break;
    std::fclose(f);
    return kib << 10;
}

std::uint64_t cgroup_limit() {  // cgroup v2; 0 when there is none or it is "max"
    std::FILE* f = std::fopen("/proc/self/cgroup", "r");
    if (!f) return 0;
    char line[1024];
    std::string path;
    while (std::fgets(line, sizeof line, f))
        if (std::strncmp(line, "0::", 3) == 0) path = std::string(line + 3);
    std::fclose(f);
    while (!path.empty() && (path.back() == '\n' || path.back() == '/'))
        path.pop_back();
    f = std::fopen(("/sys/fs/cgroup" + path + "/memory.max").c_str(), "r");
    if (!f) return 0;
    unsigned long long v = 0;
    bool ok = std::fscanf(f, "%llu", &v) == 1;
    std::fclose(f);
    return ok ? v : 0;
}

std::string gib(std::uint64_t bytes) {
    char b[32];
    std::snprintf(b, sizeof b, "%.1f GiB", double(bytes) / double(1ull << 30));
    return b;
}

}  // namespace

void check_memory(const Config& c) {
    const auto& w = c.worker;
    std::uint64_t per_worker =
        w.memory.arena_bytes + PagePool::descriptor_bytes(w.memory.arena_bytes, w.memory.order);
    if (!w.udp_listeners.empty()) per_worker += w.udp_memory.arena_bytes;
    std::uint64_t total = per_worker * c.workers;
    std::uint64_t ram = meminfo_total(), cg = cgroup_limit();
    std::uint64_t can = cg && (cg < ram || !ram) ? cg : ram;
    if (!can || total <= can) return;
    YAML::Mark m;
    m.line = c.arena_mark.first;
    m.column = c.arena_mark.second;
    fail(c.source, m,
         "memory: " + std::to_string(c.workers) + " workers x " +
             std::to_string(w.memory.arena_bytes >> 20) + " MiB arena (with descriptors" +
             (w.udp_listeners.empty() ? "" : " and UDP buffers") + ") = " + gib(total) +
             ", more than this process can have (" + gib(can) +
             (cg && can == cg ? ": its cgroup's memory.max" : " of RAM") +
             "); lower memory.arena or workers");
}

}  // namespace fp::app
