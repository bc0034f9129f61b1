package iothub

import "testing"

// Where each code the emulator can send comes from. "C#" is the C# service
// SDK's ErrorCode enum (iothub/service/src/Common/Exceptions/ErrorCode.cs),
// "hub doc" the hub's troubleshooting and common-error-code pages. A code
// only the hub documents surfaces in C# as InvalidErrorCode, exactly as it
// does against the hub; a code in neither must not be sent at all.
var codeSources = map[Code]string{
	InvalidProtocolVersion:                    "C#",
	InvalidOperation:                          "C#",
	ArgumentInvalid:                           "C#",
	ArgumentNull:                              "C#",
	IotHubFormatError:                         "C#",
	BlobContainerValidationError:              "C#",
	InvalidConfigurationTargetCondition:       "hub doc",
	InvalidConfigurationContent:               "hub doc",
	CannotModifyImmutableConfigurationContent: "hub doc",
	InvalidConfigurationCustomMetricsQuery:    "hub doc",
	DeviceDefinedMultipleTimes:                "C#",
	BulkRegistryOperationFailure:              "C#",
	GenericBadRequest:                         "hub doc", // and captured as "ErrorCode:GenericBadRequest;BadRequest" for a bad job type
	ConnectionForcefullyClosedOnNewConnection: "hub doc",
	IotHubUnauthorizedAccess:                  "C#",
	IotHubUnauthorized:                        "C#",
	IotHubQuotaExceeded:                       "C#",
	DeviceMaximumQueueDepthExceeded:           "C#",
	DeviceNotFound:                            "C#",
	JobNotFound:                               "C#",
	ModuleNotFound:                            "C#",
	ConfigurationNotFound:                     "hub doc",
	DeviceNotOnline:                           "C#",
	DeviceConnectionClosedRemotely:            "hub doc",
	GenericNotFound:                           "hub doc",
	GenericMethodNotAllowed:                   "hub doc",
	DeviceAlreadyExists:                       "C#",
	JobAlreadyExists:                          "hub doc",
	ModuleAlreadyExistsOnDevice:               "C#",
	ConfigurationAlreadyExists:                "hub doc",
	PreconditionFailed:                        "C#",
	DeviceMessageLockLost:                     "C#",
	MessageTooLarge:                           "C#",
	TooManyDevices:                            "C#",
	TooManyModulesOnDevice:                    "C#",
	ThrottlingException:                       "C#",
	ThrottlingMaxActiveJobCountExceeded:       "C#",
	ServerError:                               "C#",
	GenericTimeout:                            "hub doc",
	InvalidResponseWhileProxying:              "hub doc",
	ServiceUnavailable:                        "C#",
	GatewayTimeout:                            "hub doc",
}

func TestCodes_EachHasASource(t *testing.T) {
	for code := range codeNames {
		if codeSources[code] == "" {
			t.Errorf("%v: no source; use a code from the C# SDK's ErrorCode enum or the hub's docs", code)
		}
	}
	for code := range codeSources {
		if _, ok := codeNames[code]; !ok {
			t.Errorf("%d is listed as sourced but has no name", int(code))
		}
	}
}

// Numbers the SDKs or the hub's docs fix, where the emulator once differed.
func TestCodes_HubNumbers(t *testing.T) {
	for _, tc := range []struct {
		code Code
		want int
		name string
	}{
		{GenericBadRequest, 400000, "GenericBadRequest"},
		{ThrottlingMaxActiveJobCountExceeded, 429004, "ThrottlingMaxActiveJobCountExceeded"},
		{DeviceNotOnline, 404103, "DeviceNotOnline"},
		{GatewayTimeout, 504101, "GatewayTimeout"},
	} {
		if int(tc.code) != tc.want || tc.code.Name() != tc.name {
			t.Errorf("%v, want %d %s", tc.code, tc.want, tc.name)
		}
	}
}
