#include "storage/resolver_store.h"
