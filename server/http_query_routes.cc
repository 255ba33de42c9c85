// HTTP/JSON routes of the query API (/v1/persons..., /v1/groups...).
#include "server/http_api.h"
#include "server/query_service.h"

namespace nexus::server {

void HttpApi::AddQueryRoutes() {}

}  // namespace nexus::server
