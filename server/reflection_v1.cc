#include "server/reflection_v1.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>

#include <set>

namespace nexus::server {
namespace {

namespace rv1 = grpc::reflection::v1;
using google::protobuf::DescriptorPool;
using google::protobuf::FileDescriptor;

void SetError(grpc::StatusCode code, const std::string& message, rv1::ServerReflectionResponse* resp) {
  resp->mutable_error_response()->set_error_code(static_cast<int32_t>(code));
  resp->mutable_error_response()->set_error_message(message);
}

/// The file and, transitively, every dependency not yet sent on this stream.
void AddFile(const FileDescriptor* file, std::set<std::string>* sent, rv1::ServerReflectionResponse* resp) {
  if (!sent->insert(file->name()).second) return;
  google::protobuf::FileDescriptorProto proto;
  file->CopyTo(&proto);
  proto.SerializeToString(resp->mutable_file_descriptor_response()->add_file_descriptor_proto());
  for (int i = 0; i < file->dependency_count(); ++i) AddFile(file->dependency(i), sent, resp);
}

}  // namespace

grpc::Status ReflectionV1Service::ServerReflectionInfo(
    grpc::ServerContext*,
    grpc::ServerReaderWriter<rv1::ServerReflectionResponse, rv1::ServerReflectionRequest>* stream) {
  const DescriptorPool* pool = DescriptorPool::generated_pool();
  std::set<std::string> sent;  // files already sent on this stream (clients cache them)
  rv1::ServerReflectionRequest req;
  while (stream->Read(&req)) {
    rv1::ServerReflectionResponse resp;
    resp.set_valid_host(req.host());
    *resp.mutable_original_request() = req;
    switch (req.message_request_case()) {
      case rv1::ServerReflectionRequest::kFileByFilename: {
        const FileDescriptor* f = pool->FindFileByName(req.file_by_filename());
        if (f) {
          resp.mutable_file_descriptor_response();
          AddFile(f, &sent, &resp);
        } else {
          SetError(grpc::StatusCode::NOT_FOUND, "file not found", &resp);
        }
        break;
      }
      case rv1::ServerReflectionRequest::kFileContainingSymbol: {
        const FileDescriptor* f = pool->FindFileContainingSymbol(req.file_containing_symbol());
        if (f) {
          resp.mutable_file_descriptor_response();
          AddFile(f, &sent, &resp);
        } else {
          SetError(grpc::StatusCode::NOT_FOUND, "symbol not found", &resp);
        }
        break;
      }
      case rv1::ServerReflectionRequest::kFileContainingExtension: {
        const auto& ext = req.file_containing_extension();
        const auto* type = pool->FindMessageTypeByName(ext.containing_type());
        const auto* field = type ? pool->FindExtensionByNumber(type, ext.extension_number()) : nullptr;
        if (field) {
          resp.mutable_file_descriptor_response();
          AddFile(field->file(), &sent, &resp);
        } else {
          SetError(grpc::StatusCode::NOT_FOUND, type ? "extension not found" : "type not found", &resp);
        }
        break;
      }
      case rv1::ServerReflectionRequest::kAllExtensionNumbersOfType: {
        const auto* type = pool->FindMessageTypeByName(req.all_extension_numbers_of_type());
        if (type) {
          std::vector<const google::protobuf::FieldDescriptor*> exts;
          pool->FindAllExtensions(type, &exts);
          auto* out = resp.mutable_all_extension_numbers_response();
          out->set_base_type_name(type->full_name());
          for (const auto* e : exts) out->add_extension_number(e->number());
        } else {
          SetError(grpc::StatusCode::NOT_FOUND, "type not found", &resp);
        }
        break;
      }
      case rv1::ServerReflectionRequest::kListServices:
        for (const auto& name : services_) resp.mutable_list_services_response()->add_service()->set_name(name);
        break;
      default:
        SetError(grpc::StatusCode::UNIMPLEMENTED, "request type not supported", &resp);
    }
    if (!stream->Write(resp)) break;
  }
  return grpc::Status::OK;
}

}  // namespace nexus::server
