package iothub

// The hub's error codes that the emulator produces. Names and numbers follow
// the C# SDK's ErrorCode enum and the hub's troubleshooting doc; codes_test.go
// records which of the two vouches for each (docs/compatibility.md lists them).
const (
	InvalidProtocolVersion                    Code = 400001
	InvalidOperation                          Code = 400003
	ArgumentInvalid                           Code = 400004
	ArgumentNull                              Code = 400005
	IotHubFormatError                         Code = 400006
	BlobContainerValidationError              Code = 400008
	DeviceDefinedMultipleTimes                Code = 400011
	BulkRegistryOperationFailure              Code = 400013
	InvalidConfigurationTargetCondition       Code = 400401
	InvalidConfigurationContent               Code = 400402
	CannotModifyImmutableConfigurationContent Code = 400403
	InvalidConfigurationCustomMetricsQuery    Code = 400404
	GenericBadRequest                         Code = 400000 // 400020 is IotHubSuspended
	ConnectionForcefullyClosedOnNewConnection Code = 400027
	IotHubUnauthorizedAccess                  Code = 401002
	IotHubUnauthorized                        Code = 401003
	IotHubQuotaExceeded                       Code = 403002
	DeviceMaximumQueueDepthExceeded           Code = 403004
	DeviceNotFound                            Code = 404001
	JobNotFound                               Code = 404002
	ModuleNotFound                            Code = 404010
	ConfigurationNotFound                     Code = 404301
	DeviceNotOnline                           Code = 404103
	DeviceConnectionClosedRemotely            Code = 404104
	GenericNotFound                           Code = 404000
	GenericMethodNotAllowed                   Code = 405000
	DeviceAlreadyExists                       Code = 409001
	JobAlreadyExists                          Code = 409104
	ModuleAlreadyExistsOnDevice               Code = 409301
	ConfigurationAlreadyExists                Code = 409401
	PreconditionFailed                        Code = 412001
	DeviceMessageLockLost                     Code = 412002
	MessageTooLarge                           Code = 413001
	TooManyDevices                            Code = 413002
	TooManyModulesOnDevice                    Code = 413003
	ThrottlingException                       Code = 429001
	ThrottlingMaxActiveJobCountExceeded       Code = 429004
	ServerError                               Code = 500001
	GenericTimeout                            Code = 500008
	InvalidResponseWhileProxying              Code = 502101
	ServiceUnavailable                        Code = 503001
	GatewayTimeout                            Code = 504101
)

var codeNames = map[Code]string{
	InvalidProtocolVersion:                    "InvalidProtocolVersion",
	InvalidOperation:                          "InvalidOperation",
	ArgumentInvalid:                           "ArgumentInvalid",
	ArgumentNull:                              "ArgumentNull",
	IotHubFormatError:                         "IotHubFormatError",
	BlobContainerValidationError:              "BlobContainerValidationError",
	DeviceDefinedMultipleTimes:                "DeviceDefinedMultipleTimes",
	BulkRegistryOperationFailure:              "BulkRegistryOperationFailure",
	InvalidConfigurationTargetCondition:       "InvalidConfigurationTargetCondition",
	InvalidConfigurationContent:               "InvalidConfigurationContent",
	CannotModifyImmutableConfigurationContent: "CannotModifyImmutableConfigurationContent",
	InvalidConfigurationCustomMetricsQuery:    "InvalidConfigurationCustomMetricsQuery",
	GenericBadRequest:                         "GenericBadRequest",
	ConnectionForcefullyClosedOnNewConnection: "ConnectionForcefullyClosedOnNewConnection",
	IotHubUnauthorizedAccess:                  "IotHubUnauthorizedAccess",
	IotHubUnauthorized:                        "IotHubUnauthorized",
	IotHubQuotaExceeded:                       "IotHubQuotaExceeded",
	DeviceMaximumQueueDepthExceeded:           "DeviceMaximumQueueDepthExceeded",
	DeviceNotFound:                            "DeviceNotFound",
	JobNotFound:                               "JobNotFound",
	ModuleNotFound:                            "ModuleNotFound",
	ConfigurationNotFound:                     "ConfigurationNotFound",
	DeviceNotOnline:                           "DeviceNotOnline",
	DeviceConnectionClosedRemotely:            "DeviceConnectionClosedRemotely",
	GenericNotFound:                           "GenericNotFound",
	GenericMethodNotAllowed:                   "GenericMethodNotAllowed",
	DeviceAlreadyExists:                       "DeviceAlreadyExists",
	JobAlreadyExists:                          "JobAlreadyExists",
	ModuleAlreadyExistsOnDevice:               "ModuleAlreadyExistsOnDevice",
	ConfigurationAlreadyExists:                "ConfigurationAlreadyExists",
	PreconditionFailed:                        "PreconditionFailed",
	DeviceMessageLockLost:                     "DeviceMessageLockLost",
	MessageTooLarge:                           "MessageTooLarge",
	TooManyDevices:                            "TooManyDevices",
	TooManyModulesOnDevice:                    "TooManyModulesOnDevice",
	ThrottlingException:                       "ThrottlingException",
	ThrottlingMaxActiveJobCountExceeded:       "ThrottlingMaxActiveJobCountExceeded",
	ServerError:                               "ServerError",
	GenericTimeout:                            "GenericTimeout",
	InvalidResponseWhileProxying:              "InvalidResponseWhileProxying",
	ServiceUnavailable:                        "ServiceUnavailable",
	GatewayTimeout:                            "GatewayTimeout",
}

// statusExceptions lists codes whose HTTP status is not their first three
// digits. None are known today; the table keeps the rule testable.
var statusExceptions = map[Code]int{}
