/*
 * td_check.h -- the assertions of every C test.
 *
 * CHECK(e) / CHECK_MSG(e, fmt, ...) report a failure as `file:line: ...` on
 * stderr and count it. What happens next depends on where the test runs:
 *   - inside td_check_run() (a test case): the case ends at once, so one
 *     broken invariant does not bury its message under follow-on failures;
 *   - otherwise, if td_check_on_fail is set, it is called (a test that must
 *     clean up a server before it exits);
 *   - otherwise, with td_check_keep_going set, the program goes on and its
 *     main returns td_check_status() at the end; REQUIRE(e) is for the
 *     checks such a program cannot go past: it jumps to the `out:` label;
 *   - otherwise the program exits 1.
 * td_check_context, when set, is printed after every failure (e.g. the
 * command that replays a randomised run).
 */
#ifndef TD_CHECK_H
#define TD_CHECK_H

#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>

extern jmp_buf *td_check_jmp;
extern const char *td_check_context;
extern int td_check_failures;
extern int td_check_keep_going;
extern void (*td_check_on_fail)(void);
/* Called after every test case of td_check_run(), passed or failed. */
extern void (*td_check_after_case)(void);

void td_check_fail(const char *file, int line, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

#define CHECK(e)                                                         \
    do {                                                                 \
        if (!(e))                                                        \
            td_check_fail(__FILE__, __LINE__, "CHECK(%s) failed", #e);   \
    } while (0)

#define CHECK_MSG(e, ...)                                                \
    do {                                                                 \
        if (!(e))                                                        \
            td_check_fail(__FILE__, __LINE__, __VA_ARGS__);              \
    } while (0)

#define REQUIRE(e)                                                       \
    do {                                                                 \
        if (!(e)) {                                                      \
            td_check_fail(__FILE__, __LINE__, "REQUIRE(%s) failed", #e); \
            goto out;                                                    \
        }                                                                \
    } while (0)

/* Runs fn(arg) as a test case; returns 0 if it passed, 1 if a check failed. */
int td_check_guarded(void (*fn)(void *), void *arg);
/* The same for fn(), printing `ok   name` or `FAIL name`. */
int td_check_run(const char *name, void (*fn)(void));
/* A program made of test cases: its main reads a seed (td_check_seed),
 * then hands its table to td_check_cases. */
typedef struct td_check_case {
    const char *name;
    void (*fn)(void);
} td_check_case;
/* argv[1], if given, replaces *seed; prints the seed either way. */
void td_check_seed(int argc, char **argv, uint64_t *seed);
/* Runs every case (td_check_run); if any failed, says how many and, given
 * a seed, the command that replays the run. Returns main's exit status. */
int td_check_cases(const td_check_case *cases, size_t n, const char *prog,
                   const uint64_t *seed);
/* 0 if no check failed so far, else 1; prints a summary line when asked. */
int td_check_status(const char *name);

#endif
