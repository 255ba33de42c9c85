#include "storage/query_store.h"
