#include "net/policy/route.hpp"

namespace fp::net {

int Routing::fallback() const noexcept {
    for (std::size_t i = 0; i < routes.size(); ++i)
        if (routes[i].fallback) return int(i);
    return -1;
}

int Routing::match(std::string_view name) const noexcept {
    if (name.empty()) return fallback();
    for (std::size_t i = 0; i < routes.size(); ++i)
        for (const std::string& n : routes[i].names)
            if (n == name) return int(i);
    int best = -1;
    std::size_t best_len = 0;
    for (std::size_t i = 0; i < routes.size(); ++i)
        for (const std::string& s : routes[i].suffixes)
            if (s.size() > best_len && name.size() > s.size() && name.ends_with(s)) {
                best = int(i);
                best_len = s.size();
            }
    return best >= 0 ? best : fallback();
}

}  // namespace fp::net
