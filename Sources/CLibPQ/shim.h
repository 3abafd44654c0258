#ifndef AGENTD_CLIBPQ_SHIM_H
#define AGENTD_CLIBPQ_SHIM_H
#include <libpq-fe.h>
#endif
