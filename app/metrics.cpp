#include "app/metrics.hpp"

#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "app/json.hpp"
#include "app/proxy.hpp"
#include "net/base/stats.hpp"

namespace fp::app {
namespace {

// The families of the stats lists (net/base/stats.hpp), in the order first seen; a family may
// take samples from several lists (fragproxy_alloc_fragments_total: TCP's and UDP's arena).
struct Family {
    std::string name;
    net::StatType type;
    std::string help;
    std::vector<std::string> labels;  // each label set it has besides worker (the README's table)
    std::string samples;
    void sample(std::size_t worker, const std::string& with, std::uint64_t value) {
        samples += name + "{worker=\"" + std::to_string(worker) + '"' +
                   (with.empty() ? "" : "," + with) + "} " + std::to_string(value) + '\n';
    }
};

class Families {
  public:
    Family& of(const char* name, net::StatType type, const char* help) {
        for (Family& f : list_)
            if (f.name == name) {
                if (f.help.empty()) f.help = help;
                return f;
            }
        return list_.emplace_back(Family{name, type, help, {}, {}});
    }
    // One sample per worker of each stat in `defs`.
    template <class Stats, class Get>
    void add(std::span<const net::StatDef<Stats>> defs, std::size_t workers, Get stats_of) {
        for (const auto& d : defs) {
            Family& f = of(d.metric, d.type, d.help);
            if (*d.labels) f.labels.push_back(d.labels);
            for (std::size_t w = 0; w < workers; ++w)
                f.sample(w, d.labels, (stats_of(w).*d.field).get());
        }
    }
    const std::vector<Family>& list() const { return list_; }

  private:
    std::vector<Family> list_;
};

constexpr const char* kClosedFamily = "fragproxy_connections_closed_total";
constexpr const char* kClosedHelp =
    "TCP connections closed, by how they ended (the access log's end).";

class Writer {
  public:
    explicit Writer(const Proxy& p) : proxy_(p) {}

    // One sample per listener (by its latest name) and worker, with extra labels.
    void by_listener(
        const char* name, const char* type, const char* help,
        std::initializer_list<std::pair<const char*, Counter net::ListenerCounters::*>> samples,
        Proxy::Protocols which = Proxy::Protocols::kTcp) {
        head(name, type, help);
        proxy_.for_each_listener(
            [&](const std::string& listener, const net::ListenerShared& l) {
                for (const auto& [labels, field] : samples)
                    for (std::size_t w = 0; w < proxy_.workers().size(); ++w) {
                        o_ << name << "{listener=" << quoted(listener) << ",worker=\"" << w << '"';
                        if (*labels) o_ << ',' << labels;
                        o_ << "} " << (l.per_worker[w].*field).get() << '\n';
                    }
            },
            which);
    }
    void head(const char* name, const char* type, const char* help) {
        o_ << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
    }
    void line(const std::string& text) { o_ << text << '\n'; }
    void raw(const std::string& text) { o_ << text; }
    static std::string quoted(const std::string& v) {  // a label value, escaped
        std::string o = "\"";
        for (char ch : v) {
            if (ch == '\\' || ch == '"') o += '\\';
            if (ch == '\n') {
                o += "\\n";
                continue;
            }
            o += ch;
        }
        return o + '"';
    }
    std::string str() const { return o_.str(); }

  private:
    const Proxy& proxy_;
    std::ostringstream o_;
};

// Every stats list's families, with the samples of every worker; closed_by as one family by how.
std::vector<Family> stat_families(const Proxy* proxy) {
    static const std::vector<std::unique_ptr<net::Worker>> none;
    const auto& workers = proxy ? proxy->workers() : none;
    const std::size_t n = proxy ? workers.size() : 0;
    Families fs;
    fs.add(net::kTcpStatDefs, n,
           [&](std::size_t w) -> const net::TcpStats& { return workers[w]->tcp_stats(); });
    Family& closed = fs.of(kClosedFamily, net::StatType::kCounter, kClosedHelp);
    for (std::size_t how = 1; how < net::kAccessEnds; ++how) {  // (0, kNone: no closed one has)
        const std::string with =
            std::string("how=\"") + net::access_end_name(net::AccessEnd(how)) + '"';
        closed.labels.push_back(with);
        for (std::size_t i = 0; i < n; ++i)
            closed.sample(i, with, workers[i]->tcp_stats().closed_by[how].get());
    }
    fs.add(net::kUdpStatDefs, n,
           [&](std::size_t w) -> const net::UdpStats& { return workers[w]->udp_stats(); });
    fs.add(net::kRingStatDefs, n,
           [&](std::size_t w) -> const net::RingStats& { return workers[w]->ring_stats(); });
    return fs.list();
}
std::vector<Family> stat_families(const Proxy& proxy) {
    return stat_families(&proxy);
}

}  // namespace

// The README's table of the per-worker stats: one row per family.
std::string stats_table() {
    std::string out =
        "| metric | type | labels besides `worker` | what it counts |\n"
        "|---|---|---|---|\n";
    auto cell = [](const std::string& v) {
        std::string o;
        for (char ch : v) {
            if (ch == '|') o += '\\';
            o += ch;
        }
        return o;
    };
    for (const Family& f : stat_families(nullptr)) {
        std::string ls;
        for (const std::string& one : f.labels)
            ls += (ls.empty() ? "`" : ", `") + one + "`";
        out += "| `" + f.name + "` | " + net::stat_type_name(f.type) + " | " + cell(ls) + " | " +
               cell(f.help) + " |\n";
    }
    return out;
}

// [{"section": "tcp", "key": ..., "metric": ..., "labels": ..., "type": ...}, ...]: every stat of
// the lists, for tests.
std::string stats_list_json() {
    std::string out = "[";
    auto list = [&](const char* section, const auto& defs) {
        for (const auto& d : defs)
            out += std::string(out.size() > 1 ? ",\n " : "") + "{\"section\": \"" + section +
                   "\", \"key\": \"" + d.json + "\", \"metric\": \"" + d.metric +
                   "\", \"labels\": " + json_quoted(d.labels) + ", \"type\": \"" +
                   (d.type == net::StatType::kPeak ? "peak" : net::stat_type_name(d.type)) + "\"}";
    };
    list("tcp", net::kTcpStatDefs);
    list("udp", net::kUdpStatDefs);
    list("ring", net::kRingStatDefs);
    return out + "]\n";
}

std::string render_metrics(const Proxy& proxy) {
    Writer w(proxy);
    w.line("# HELP fragproxy_build_info The running fragproxy.");
    w.line("# TYPE fragproxy_build_info gauge");
    w.line(std::string("fragproxy_build_info{version=\"") + FRAGPROXY_VERSION + "\"} 1");
    w.line("# HELP fragproxy_draining 1 while a graceful drain runs (SIGTERM).");
    w.line("# TYPE fragproxy_draining gauge");
    w.line(std::string("fragproxy_draining ") + (proxy.draining() ? "1" : "0"));
    w.head("fragproxy_worker_tick_age_seconds", "gauge",
           "Seconds since the worker last ran its once-a-second tick (5 or more: /healthz fails).");
    for (std::size_t i = 0; i < proxy.workers().size(); ++i)
        w.line("fragproxy_worker_tick_age_seconds{worker=\"" + std::to_string(i) + "\"} " +
               std::to_string(proxy.tick_age_ms(i) / 1000));
    w.line("# HELP fragproxy_config_reloads_total Reloads (SIGHUP, POST /reload) by result.");
    w.line("# TYPE fragproxy_config_reloads_total counter");
    w.line("fragproxy_config_reloads_total{result=\"ok\"} " + std::to_string(proxy.reloads(true)));
    w.line("fragproxy_config_reloads_total{result=\"error\"} " +
           std::to_string(proxy.reloads(false)));
    w.by_listener("fragproxy_connections_total", "counter", "TCP connections accepted.",
                  {{"", &net::ListenerCounters::accepted}});
    w.head("fragproxy_connections_active", "gauge", "TCP connections open, across the workers.");
    proxy.for_each_listener([&](const std::string& name, const net::ListenerShared& l) {
        w.line("fragproxy_connections_active{listener=" + Writer::quoted(name) + "} " +
               std::to_string(l.connections.load(std::memory_order_relaxed)));
    });
    w.by_listener("fragproxy_connections_rejected_total", "counter",
                  "TCP connections refused at accept, or once their PROXY header or ClientHello "
                  "was read.",
                  {{"reason=\"max_connections\"", &net::ListenerCounters::rejected},
                   {"reason=\"denied\"", &net::ListenerCounters::denied},
                   {"reason=\"source_connections\"", &net::ListenerCounters::source_capped},
                   {"reason=\"source_rate\"", &net::ListenerCounters::source_rate_limited},
                   {"reason=\"no_upstream\"", &net::ListenerCounters::no_upstream},
                   {"reason=\"untrusted\"", &net::ListenerCounters::untrusted},
                   {"reason=\"proxy_invalid\"", &net::ListenerCounters::proxy_invalid},
                   {"reason=\"proxy_timeout\"", &net::ListenerCounters::proxy_timeout},
                   {"reason=\"no_route\"", &net::ListenerCounters::no_route},
                   {"reason=\"client_hello_invalid\"", &net::ListenerCounters::hello_invalid},
                   {"reason=\"client_hello_timeout\"", &net::ListenerCounters::hello_timeout}});
    w.head("fragproxy_route_connections_total", "counter",
           "TCP connections sent down a route (routes: by the ClientHello's server name).");
    proxy.for_each_route(
        [&](const std::string& listener, const std::string& route, const net::RouteShared& r) {
            for (std::size_t i = 0; i < proxy.workers().size(); ++i)
                w.line("fragproxy_route_connections_total{listener=" + Writer::quoted(listener) +
                       ",route=" + Writer::quoted(route) + ",worker=\"" + std::to_string(i) +
                       "\"} " + std::to_string(r.per_worker[i].connections.get()));
        });
    auto by_upstream = [&](const char* name, const char* help,
                           Counter net::UpstreamCounters::*field) {
        w.head(name, "counter", help);
        proxy.for_each_upstream([&](const std::string& addr, const net::UpstreamShared& u) {
            for (std::size_t i = 0; i < proxy.workers().size(); ++i)
                w.line(std::string(name) + "{upstream=" + Writer::quoted(addr) + ",worker=\"" +
                       std::to_string(i) + "\"} " + std::to_string((u.per_worker[i].*field).get()));
        });
    };
    by_upstream("fragproxy_upstream_connect_failures_total",
                "Upstream connects that failed (refused, unreachable, timed out).",
                &net::UpstreamCounters::connect_failures);
    by_upstream("fragproxy_upstream_connects_total", "Upstream connects that succeeded.",
                &net::UpstreamCounters::connects);
    w.head("fragproxy_upstream_up", "gauge",
           "1 while the upstream is in service, 0 while health checks keep it out.");
    proxy.for_each_upstream([&](const std::string& addr, const net::UpstreamShared& u) {
        w.line("fragproxy_upstream_up{upstream=" + Writer::quoted(addr) + "} " +
               (u.usable() ? "1" : "0"));
    });
    w.by_listener("fragproxy_bytes_total", "counter",
                  "Payload bytes forwarded (TCP; UDP: the datagrams' payloads).",
                  {{"direction=\"client_to_upstream\"", &net::ListenerCounters::bytes_client},
                   {"direction=\"upstream_to_client\"", &net::ListenerCounters::bytes_upstream}},
                  Proxy::Protocols::kAll);
    w.by_listener("fragproxy_udp_sessions_total", "counter", "UDP sessions opened.",
                  {{"", &net::ListenerCounters::sessions}}, Proxy::Protocols::kUdp);
    w.by_listener(
        "fragproxy_udp_datagrams_total", "counter",
        "UDP datagrams forwarded (taken to be sent on; drops are udp_dropped_total).",
        {{"direction=\"client_to_upstream\"", &net::ListenerCounters::datagrams_client},
         {"direction=\"upstream_to_client\"", &net::ListenerCounters::datagrams_upstream}},
        Proxy::Protocols::kUdp);
    if (const AccessLog* log = proxy.access_log()) {
        w.line(
            "# HELP fragproxy_access_log_dropped_total Access-log records dropped: the logger "
            "was behind.");
        w.line("# TYPE fragproxy_access_log_dropped_total counter");
        for (std::size_t i = 0; i < proxy.workers().size(); ++i)
            w.line("fragproxy_access_log_dropped_total{worker=\"" + std::to_string(i) + "\"} " +
                   std::to_string(log->dropped(unsigned(i))));
        w.line("# HELP fragproxy_access_log_records_total Access-log lines written.");
        w.line("# TYPE fragproxy_access_log_records_total counter");
        w.line("fragproxy_access_log_records_total " + std::to_string(log->written()));
    }
    for (const Family& f : stat_families(proxy)) {
        w.head(f.name.c_str(), net::stat_type_name(f.type), f.help.c_str());
        w.raw(f.samples);
    }
    return w.str();
}

}  // namespace fp::app
