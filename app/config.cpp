#include "app/config.hpp"

#include <yaml-cpp/yaml.h>

#include <charconv>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

namespace fp::app {
namespace {

constexpr std::uint64_t kMiB = 1 << 20;

[[noreturn]] void fail(const std::string& source, const YAML::Mark& m, const std::string& msg) {
    throw ConfigError(source + ":" + std::to_string(m.line + 1) + ":" +
                      std::to_string(m.column + 1) + ": " + msg);
}

// A mapping whose keys are checked: reading marks a key known; finish() rejects the rest.
class Map {
  public:
    Map(const YAML::Node& node, const std::string& source, std::string path)
        : node_(node), source_(source), path_(std::move(path)) {
        if (!node.IsMap()) fail(source_, node.Mark(), path_ + " must be a mapping");
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
        if (!n.IsScalar() || !YAML::convert<T>::decode(n, v))
            fail(source_, n.Mark(), name(key) + " must be an integer");
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
        for (const auto& kv : node_) {
            auto key = kv.first.as<std::string>();
            if (!known_.count(key)) fail(source_, kv.first.Mark(), "unknown key " + name(key));
        }
    }
    std::string name(const std::string& key) const { return path_ + "." + key; }
    const std::string& source() const { return source_; }

  private:
    YAML::Node node_;
    const std::string& source_;
    std::string path_;
    std::set<std::string> known_;
};

net::SockAddr address(const YAML::Node& n, const std::string& source, const std::string& what) {
    std::string why;
    if (!n.IsScalar()) fail(source, n.Mark(), what + " must be an address string");
    auto a = net::parse_address(n.Scalar(), &why);
    if (!a) fail(source, n.Mark(), what + " '" + n.Scalar() + "': " + why);
    return *a;
}

net::Millis duration(Map& m, const std::string& key, net::Millis fallback) {
    YAML::Node n = m.get(key);
    if (!n) return fallback;
    auto d = n.IsScalar() ? parse_duration(n.Scalar()) : std::nullopt;
    if (!d || d->count() <= 0)
        fail(m.source(), n.Mark(), m.name(key) + " must be a positive duration like 250ms, 5s, 2m");
    return *d;
}

void parse_memory(Config& c, Map m) {
    YAML::Node arena = m.get("arena");
    if (arena) {
        auto bytes = arena.IsScalar() ? parse_size(arena.Scalar()) : std::nullopt;
        if (!bytes || *bytes % (2 * kMiB) != 0 || *bytes < 4 * kMiB || *bytes > 64 * 1024 * kMiB)
            fail(m.source(), arena.Mark(),
                 "memory.arena must be a size like 64MiB: a multiple of 2MiB from 4MiB to 64GiB");
        c.worker.memory.arena_bytes = *bytes;
    }
    c.worker.memory.order = m.scalar<unsigned>("page_order", 4, 0, 9);
    c.worker.buf_ring_pages = m.scalar<unsigned>("recv_pages", 16, 1, 4096);
    YAML::Node huge = m.get("hugetlb");
    if (huge && (!huge.IsScalar() || !YAML::convert<bool>::decode(huge, c.worker.memory.hugetlb)))
        fail(m.source(), huge.Mark(), "memory.hugetlb must be true or false");
    m.finish();
    auto pages = c.worker.memory.arena_bytes >> (12 + c.worker.memory.order);
    if (c.worker.buf_ring_pages * 2 > pages)
        fail(m.source(), m.get("recv_pages").Mark(),
             "memory.recv_pages needs at most half of the arena's " + std::to_string(pages) +
                 " pages");
}

struct Common {
    std::string name, protocol;
    net::SockAddr listen;
    std::vector<net::SockAddr> upstreams;
};

Common parse_common(Map& m, const YAML::Node& node, const std::string& source) {
    Common c;
    c.name = m.text("name", "", true);
    c.protocol = m.text("protocol", "tcp");
    if (c.protocol != "tcp" && c.protocol != "udp")
        fail(source, m.get("protocol").Mark(),
             m.name("protocol") + " '" + c.protocol + "' is not supported (tcp or udp)");
    YAML::Node listen = m.get("listen");
    if (!listen) fail(source, node.Mark(), m.name("listen") + " is required");
    c.listen = address(listen, source, m.name("listen"));
    YAML::Node ups = m.get("upstreams");
    if (!ups || !ups.IsSequence() || ups.size() == 0)
        fail(source, ups ? ups.Mark() : node.Mark(),
             m.name("upstreams") + " must be a non-empty list of addresses");
    for (const auto& u : ups)
        c.upstreams.push_back(address(u, source, m.name("upstreams")));
    return c;
}

net::TcpListenerSettings parse_tcp(Map& m, Common c, const std::string& source) {
    net::TcpListenerSettings l;
    l.name = std::move(c.name);
    l.listen = c.listen;
    l.upstreams = std::move(c.upstreams);
    if (YAML::Node t = m.get("timeouts")) {
        Map tm(t, source, m.name("timeouts"));
        l.connect_timeout = duration(tm, "connect", l.connect_timeout);
        l.idle_timeout = duration(tm, "idle", l.idle_timeout);
        tm.finish();
    }
    l.max_connections = m.scalar<std::uint32_t>("max_connections", 10000, 1, 1000000);
    l.max_inflight_bytes = m.scalar<std::uint32_t>("max_inflight_kib", 1024, 16, 1 << 20) * 1024;
    return l;
}

net::UdpListenerSettings parse_udp(Map& m, Common c) {
    net::UdpListenerSettings l;
    l.name = std::move(c.name);
    l.listen = c.listen;
    l.upstreams = std::move(c.upstreams);
    l.session_timeout = duration(m, "session_timeout", l.session_timeout);
    l.max_sessions = m.scalar<std::uint32_t>("max_sessions", 10000, 1, 1000000);
    l.max_sessions_per_source = m.scalar<std::uint32_t>("max_sessions_per_source", 256, 1, 1000000);
    return l;
}

void parse_listener(Config& cfg, const YAML::Node& node, const std::string& source, std::size_t i) {
    Map m(node, source, "listeners[" + std::to_string(i) + "]");
    Common c = parse_common(m, node, source);
    for (const auto& prev : cfg.worker.listeners)
        if (prev.name == c.name)
            fail(source, node["name"].Mark(), "listener name '" + c.name + "' is used twice");
    for (const auto& prev : cfg.worker.udp_listeners)
        if (prev.name == c.name)
            fail(source, node["name"].Mark(), "listener name '" + c.name + "' is used twice");
    auto taken = [&](const auto& list) {
        for (const auto& prev : list)
            if (prev.listen == c.listen)
                fail(source, node["listen"].Mark(),
                     c.protocol + " listen address " + c.listen.str() +
                         " is already used by listener '" + prev.name + "'");
    };
    if (c.protocol == "tcp") {
        taken(cfg.worker.listeners);
        cfg.worker.listeners.push_back(parse_tcp(m, std::move(c), source));
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
    if (!n.IsScalar() || !YAML::convert<unsigned>::decode(n, w) || w < 1 || w > 256)
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

Config parse_config(const std::string& text, const std::string& source) {
    YAML::Node root;
    try {
        root = YAML::Load(text);
    } catch (const YAML::ParserException& e) {
        fail(source, e.mark, e.msg);
    }
    Config c;
    c.source = source;
    if (!root || root.IsNull()) throw ConfigError(source + ":1:1: the configuration is empty");
    try {
        Map m(root, source, "config");
        c.workers = parse_workers(m.get("workers"), source);
        if (YAML::Node mem = m.get("memory")) parse_memory(c, Map(mem, source, "memory"));
        YAML::Node ls = m.get("listeners");
        if (!ls || !ls.IsSequence() || ls.size() == 0)
            fail(source, ls ? ls.Mark() : root.Mark(), "listeners must be a non-empty list");
        for (std::size_t i = 0; i < ls.size(); ++i)
            parse_listener(c, ls[i], source, i);
        m.finish();
    } catch (const YAML::Exception& e) {
        fail(source, e.mark, e.msg);
    }
    return c;
}

Config load_config(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw ConfigError(path + ":1:1: cannot open the configuration file");
    std::stringstream ss;
    ss << in.rdbuf();
    return parse_config(ss.str(), path);
}

// "  - name: N\n    protocol: P\n    listen: A\n    upstreams: [B, C]\n" for --check.
template <class Listener>
void describe_common(std::ostream& o, const Listener& l, const char* protocol) {
    o << "  - name: " << l.name << "\n    protocol: " << protocol
      << "\n    listen: " << l.listen.str() << "\n    upstreams: [";
    for (std::size_t i = 0; i < l.upstreams.size(); ++i)
        o << (i ? ", " : "") << l.upstreams[i].str();
    o << "]\n";
}

std::string describe(const Config& c) {
    std::ostringstream o;
    const auto& w = c.worker;
    o << "workers: " << c.workers << "\n"
      << "memory: {arena: " << (w.memory.arena_bytes >> 20) << "MiB, page_order: " << w.memory.order
      << ", recv_pages: " << w.buf_ring_pages
      << ", hugetlb: " << (w.memory.hugetlb ? "true" : "false") << "}\nlisteners:\n";
    for (const auto& l : w.listeners) {
        describe_common(o, l, "tcp");
        o << "    timeouts: {connect: " << l.connect_timeout.count()
          << "ms, idle: " << l.idle_timeout.count()
          << "ms}\n    max_connections: " << l.max_connections
          << "\n    max_inflight_kib: " << l.max_inflight_bytes / 1024 << "\n";
    }
    for (const auto& l : w.udp_listeners) {
        describe_common(o, l, "udp");
        o << "    session_timeout: " << l.session_timeout.count()
          << "ms\n    max_sessions: " << l.max_sessions
          << "\n    max_sessions_per_source: " << l.max_sessions_per_source << "\n";
    }
    return o.str();
}

}  // namespace fp::app
