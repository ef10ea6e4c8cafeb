/*
 * store_error.c -- error codes and the messages every entry point shares.
 *
 * A message names what was wrong (document, key, path) so that an operator
 * reading a log line can find it; the messages written here are the ones
 * several entry points give for the same mistake, kept identical.
 */
#include <stdio.h>

#include "store_internal.h"

static const char *const err_names[] = {
    [TD_STORE_OK] = "ok",
    [TD_STORE_ERR_NOMEM] = "out of memory",
    [TD_STORE_ERR_ARG] = "invalid argument",
    [TD_STORE_ERR_IO] = "i/o error",
    [TD_STORE_ERR_LOCKED] = "locked",
    [TD_STORE_ERR_VERSION] = "incompatible format version",
    [TD_STORE_ERR_NOT_FOUND] = "not found",
    [TD_STORE_ERR_CORRUPT] = "corrupt",
    [TD_STORE_ERR_EXISTS] = "already exists",
    [TD_STORE_ERR_CLOSED] = "closed",
    [TD_STORE_ERR_BUSY] = "busy",
    [TD_STORE_ERR_KIND] = "document of another kind",
};

const char *td_store_kind_name(td_store_kind k)
{
    return k == TD_STORE_KIND_YJS ? "yjs" : k == TD_STORE_KIND_TANDEM ? "tandem" : "unknown";
}

const char *td_store_strerror(td_store_err err)
{
    if ((size_t)err < sizeof err_names / sizeof err_names[0] && err_names[err])
        return err_names[err];
    return "unknown error";
}

td_store_err td_store_seterr(td_store_error *err, td_store_err code,
                             const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

td_store_err td_store_err_bad_id(td_store_error *err)
{
    return td_store_seterr(err, TD_STORE_ERR_ARG,
                           "invalid document id (1..255 bytes of UTF-8, no "
                           "control characters)");
}

td_store_err td_store_err_read_only(const td_store *st, td_store_error *err)
{
    return td_store_seterr(err, TD_STORE_ERR_ARG, "store %s is open read-only",
                           st->dir);
}

td_store_err td_store_err_nomem(td_store_error *err)
{
    return td_store_seterr(err, TD_STORE_ERR_NOMEM, "out of memory");
}
