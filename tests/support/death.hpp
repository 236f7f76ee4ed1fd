#pragma once
// Death tests: runs a callable in a forked child and reports how it ended and what it printed on
// stderr, so checked misuse (an FP_CHECK abort) can be asserted from doctest.
#include <sys/wait.h>
#include <unistd.h>

#include <string>

namespace fp::test {

struct Death {
    bool aborted = false;  // the child died of SIGABRT
    std::string stderr_text;
};

template <class Fn>
Death run_in_child(Fn&& fn) {
    int pipefd[2];
    if (::pipe(pipefd) != 0) return {};
    pid_t pid = ::fork();
    if (pid == 0) {
        ::dup2(pipefd[1], STDERR_FILENO);
        ::close(pipefd[0]);
        fn();
        ::_exit(0);
    }
    ::close(pipefd[1]);
    Death d;
    char buf[512];
    for (ssize_t n; (n = ::read(pipefd[0], buf, sizeof buf)) > 0;)
        d.stderr_text.append(buf, n);
    ::close(pipefd[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    d.aborted = WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
    return d;
}

}  // namespace fp::test
