/*
 * td_check.c -- see td_check.h.
 */
#include "td_check.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

jmp_buf *td_check_jmp;
const char *td_check_context;
int td_check_failures;
int td_check_keep_going;
void (*td_check_on_fail)(void);
void (*td_check_after_case)(void);

void td_check_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (td_check_context)
        fprintf(stderr, "%s\n", td_check_context);
    fflush(stderr);
    td_check_failures++;
    if (td_check_jmp)
        longjmp(*td_check_jmp, 1);
    if (td_check_on_fail)
        td_check_on_fail();
    if (!td_check_keep_going)
        exit(1);
}

/* No local is written between setjmp and longjmp, so none can be
 * clobbered. */
int td_check_guarded(void (*fn)(void *), void *arg)
{
    jmp_buf jb;
    jmp_buf *const saved = td_check_jmp;
    td_check_jmp = &jb;
    if (setjmp(jb) != 0) {
        td_check_jmp = saved;
        return 1;
    }
    fn(arg);
    td_check_jmp = saved;
    return 0;
}

static void call_plain(void *fn)
{
    void (*f)(void);
    memcpy(&f, fn, sizeof f);
    f();
}

int td_check_run(const char *name, void (*fn)(void))
{
    int failed = td_check_guarded(call_plain, &fn);
    if (td_check_after_case)
        td_check_after_case();
    printf("%s %s\n", failed ? "FAIL" : "ok  ", name);
    fflush(stdout);
    return failed;
}

void td_check_seed(int argc, char **argv, uint64_t *seed)
{
    if (argc > 1)
        *seed = strtoull(argv[1], NULL, 0);
    printf("seed %llu\n", (unsigned long long)*seed);
}

int td_check_cases(const td_check_case *cases, size_t n, const char *prog,
                   const uint64_t *seed)
{
    int failed = 0;
    for (size_t i = 0; i < n; i++)
        failed += td_check_run(cases[i].name, cases[i].fn);
    if (failed && seed)
        printf("%d test(s) failed (replay: %s %llu)\n", failed, prog,
               (unsigned long long)*seed);
    else if (failed)
        printf("%d test(s) failed\n", failed);
    return failed ? 1 : 0;
}

int td_check_status(const char *name)
{
    if (name)
        printf("%s: %s (%d failed checks)\n", name,
               td_check_failures ? "FAILED" : "ok", td_check_failures);
    return td_check_failures ? 1 : 0;
}
