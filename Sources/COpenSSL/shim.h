// OpenSSL 3, plus inline wrappers for the macros Swift cannot import.
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/opensslv.h>

/// SSL_set_tlsext_host_name is a macro over SSL_ctrl: sets SNI on a client connection.
static inline long COpenSSL_SSL_set_tlsext_host_name(SSL *ssl, const char *name) {
    return SSL_set_tlsext_host_name(ssl, name);
}

/// SSL_CTX_set_min_proto_version is a macro over SSL_CTX_ctrl.
static inline long COpenSSL_SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version) {
    return SSL_CTX_set_min_proto_version(ctx, version);
}

/// SSL_CTX_set_mode is a macro over SSL_CTX_ctrl (partial writes, moving write buffers).
static inline long COpenSSL_SSL_CTX_set_mode(SSL_CTX *ctx, long mode) {
    return SSL_CTX_set_mode(ctx, mode);
}

/// SSL_CTX_set_session_cache_mode is a macro over SSL_CTX_ctrl.
static inline long COpenSSL_SSL_CTX_set_session_cache_mode(SSL_CTX *ctx, long mode) {
    return SSL_CTX_set_session_cache_mode(ctx, mode);
}

/// SSL_OP_NO_RENEGOTIATION and SSL_OP_NO_COMPRESSION are SSL_OP_BIT expressions Swift cannot import.
static inline uint64_t COpenSSL_SSL_OP_NO_RENEGOTIATION(void) {
    return SSL_OP_NO_RENEGOTIATION;
}

static inline uint64_t COpenSSL_SSL_OP_NO_COMPRESSION(void) {
    return SSL_OP_NO_COMPRESSION;
}
