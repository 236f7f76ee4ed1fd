#include "app/privileges.hpp"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <system_error>
#include <vector>

namespace fp::app {

void drop_privileges(const std::string& user) {
    if (user.empty()) return;
    if (::geteuid() != 0) {
        std::fprintf(stderr, "fragproxy: user: %s ignored: not started as root\n", user.c_str());
        return;
    }
    passwd pw{};
    passwd* found = nullptr;
    std::vector<char> buf(16384);
    const int rc = ::getpwnam_r(user.c_str(), &pw, buf.data(), buf.size(), &found);
    if (!found) throw std::system_error(rc ? rc : ENOENT, std::generic_category(), "user: " + user);
    auto check = [&](int r, const char* what) {
        if (r != 0)
            throw std::system_error(errno, std::generic_category(),
                                    std::string("user: ") + user + ": " + what);
    };
    check(::setgroups(1, &pw.pw_gid), "setgroups");
    check(::setgid(pw.pw_gid), "setgid");
    check(::setuid(pw.pw_uid), "setuid");
    if (::setuid(0) == 0)
        throw std::system_error(EPERM, std::generic_category(), "user: root could be taken back");
    std::fprintf(stderr, "fragproxy: running as %s (uid %u, gid %u)\n", user.c_str(),
                 unsigned(pw.pw_uid), unsigned(pw.pw_gid));
}

}  // namespace fp::app
