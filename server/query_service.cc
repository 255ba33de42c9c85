#include "server/query_service.h"
