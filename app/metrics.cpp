#include "app/metrics.hpp"

#include <sstream>

#include "app/proxy.hpp"

namespace fp::app {
namespace {

using T = net::TcpStats;
using U = net::UdpStats;

// One sample per worker of a TcpStats or UdpStats counter, with extra labels.
template <class Stats>
struct Sample {
    const char* labels;  // "" or `key="value"` pairs, without braces
    Counter Stats::*field;
};

class Writer {
  public:
    explicit Writer(const Proxy& p) : proxy_(p) {}

    // head=false: more samples of the family just written (its other stats type).
    template <class Stats, std::size_t N>
    void family(const char* name, const char* type, const char* help,
                const Sample<Stats> (&samples)[N], bool with_head = true) {
        if (with_head) head(name, type, help);
        for (const auto& s : samples)
            for (std::size_t w = 0; w < proxy_.workers().size(); ++w) {
                o_ << name << "{worker=\"" << w << '"';
                if (*s.labels) o_ << ',' << s.labels;
                o_ << "} " << (stats_of<Stats>(w).*s.field).get() << '\n';
            }
    }
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
    void ring(const char* name, const char* help, Counter net::RingStats::*field) {
        head(name, "counter", help);
        for (std::size_t w = 0; w < proxy_.workers().size(); ++w)
            o_ << name << "{worker=\"" << w << "\"} "
               << (proxy_.workers()[w]->ring_stats().*field).get() << '\n';
    }
    void line(const std::string& text) { o_ << text << '\n'; }
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
    template <class Stats>
    const Stats& stats_of(std::size_t w) const {
        if constexpr (std::is_same_v<Stats, T>)
            return proxy_.workers()[w]->tcp_stats();
        else
            return proxy_.workers()[w]->udp_stats();
    }

    const Proxy& proxy_;
    std::ostringstream o_;
};

}  // namespace

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
    w.head("fragproxy_connections_closed_total", "counter",
           "TCP connections closed, by how they ended (the access log's end).");
    for (std::size_t how = 1; how < net::kAccessEnds; ++how)  // (0, kNone: no closed one has it)
        for (std::size_t i = 0; i < proxy.workers().size(); ++i)
            w.line(std::string("fragproxy_connections_closed_total{worker=\"") + std::to_string(i) +
                   "\",how=\"" + net::access_end_name(net::AccessEnd(how)) + "\"} " +
                   std::to_string(proxy.workers()[i]->tcp_stats().closed_by[how].get()));
    w.family("fragproxy_connections_reset_total", "counter",
             "TCP connections closed with a reset (RST), whatever the reason.",
             {Sample<T>{"", &T::resets}});
    w.family("fragproxy_connections_cut_total", "counter",
             "TCP connections closed with data still queued (always a reset).",
             {Sample<T>{"", &T::cut}});
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
    w.family("fragproxy_upstream_retries_total", "counter",
             "Connects tried on the next upstream after one failed.", {Sample<T>{"", &T::retries}});
    w.family("fragproxy_timeouts_total", "counter", "Connections ended by a timeout.",
             {Sample<T>{"kind=\"connect\"", &T::connect_timeouts},
              Sample<T>{"kind=\"idle\"", &T::idle_timeouts},
              Sample<T>{"kind=\"send_stall\"", &T::send_stalls}});
    w.by_listener("fragproxy_bytes_total", "counter",
                  "Payload bytes forwarded (TCP; UDP: the datagrams' payloads).",
                  {{"direction=\"client_to_upstream\"", &net::ListenerCounters::bytes_client},
                   {"direction=\"upstream_to_client\"", &net::ListenerCounters::bytes_upstream}},
                  Proxy::Protocols::kAll);
    w.family("fragproxy_udp_sessions_active", "gauge",
             "UDP sessions established (published once a second).", {Sample<U>{"", &U::live}});
    w.by_listener("fragproxy_udp_sessions_total", "counter", "UDP sessions opened.",
                  {{"", &net::ListenerCounters::sessions}}, Proxy::Protocols::kUdp);
    w.by_listener(
        "fragproxy_udp_datagrams_total", "counter",
        "UDP datagrams forwarded (taken to be sent on; drops are udp_dropped_total).",
        {{"direction=\"client_to_upstream\"", &net::ListenerCounters::datagrams_client},
         {"direction=\"upstream_to_client\"", &net::ListenerCounters::datagrams_upstream}},
        Proxy::Protocols::kUdp);
    w.family("fragproxy_udp_dropped_total", "counter", "UDP datagrams or sessions dropped.",
             {Sample<U>{"reason=\"session_refused\"", &U::sessions_refused},
              Sample<U>{"reason=\"no_buffer\"", &U::dropped_no_buffer},
              Sample<U>{"reason=\"max_responses\"", &U::dropped_responses},
              Sample<U>{"reason=\"upstream_error\"", &U::upstream_errors},
              Sample<U>{"reason=\"denied\"", &U::denied},
              Sample<U>{"reason=\"no_upstream\"", &U::dropped_no_upstream}});
    w.family("fragproxy_alloc_pages_in_use", "gauge",
             "Pages of the TCP arena in use (published once a second).",
             {Sample<T>{"", &T::pages_in_use}});
    w.family("fragproxy_alloc_fragments_total", "counter",
             "Fragments received into (one per receive completion with data).",
             {Sample<T>{"arena=\"tcp\"", &T::frags}});
    w.family("fragproxy_alloc_fragments_total", "counter", "",
             {Sample<U>{"arena=\"udp\"", &U::frags}}, false);
    w.family("fragproxy_alloc_page_reuse_total", "counter",
             "Receive pages charged again in place once all their fragments came back, or new "
             "from the pool (published once a second).",
             {Sample<T>{"arena=\"tcp\",how=\"in_place\"", &T::pages_reused},
              Sample<T>{"arena=\"tcp\",how=\"new\"", &T::pages_new}});
    w.family("fragproxy_alloc_page_reuse_total", "counter", "",
             {Sample<U>{"arena=\"udp\",how=\"in_place\"", &U::pages_reused},
              Sample<U>{"arena=\"udp\",how=\"new\"", &U::pages_new}},
             false);
    w.family("fragproxy_alloc_drains_total", "counter",
             "A closing connection's queued fragments released, one call per page.",
             {Sample<T>{"", &T::page_drains}});
    w.ring("fragproxy_ring_submits_total", "SQEs submitted to the worker's io_uring.",
           &net::RingStats::sqes);
    w.ring("fragproxy_ring_cqes_total", "CQEs handled.", &net::RingStats::cqes);
    w.ring("fragproxy_ring_enters_total",
           "io_uring_enter calls (submit and wait: one per pass, two for a batch wait with "
           "something to submit).",
           &net::RingStats::enters);
    w.ring(
        "fragproxy_ring_batch_waits_total",
        "Waits of a worker busy with UDP for a batch of CQEs, bounded by io_uring.batch_wait_us.",
        &net::RingStats::batch_waits);
    w.family("fragproxy_recv_buffer_waits_total", "counter",
             "Receives that waited for receive buffers.",
             {Sample<T>{"protocol=\"tcp\"", &T::starved}});
    w.family("fragproxy_memory_pressure", "gauge", "0 below, 1 pressure, 2 above.",
             {Sample<T>{"", &T::pressure_level}});
    w.family("fragproxy_collapses_total", "counter",
             "Stuck queues copied into compact fragments under memory pressure.",
             {Sample<T>{"", &T::collapses}});
    w.family(
        "fragproxy_buffer_clamps_total", "counter",
        "Kernel socket buffers clamped behind a stuck peer, and given back once it caught up.",
        {Sample<T>{"action=\"clamp\"", &T::clamps}, Sample<T>{"action=\"unclamp\"", &T::unclamps}});
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
    return w.str();
}

}  // namespace fp::app
