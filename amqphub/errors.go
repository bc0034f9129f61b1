package amqphub

import (
	"github.com/google/uuid"

	"github.com/iothub-emulator/iothub-emulator/amqp"
	"github.com/iothub-emulator/iothub-emulator/iothub"
)

// conditions maps the hub's error codes to the AMQP error conditions the
// service SDKs translate into their typed errors (Node azure-iothub
// amqp_service_errors.js and common-amqp amqp_common_errors.js): not-found is
// DeviceNotFoundError, resource-limit-exceeded on a C2D send is
// DeviceMaximumQueueDepthExceededError, message-size-exceeded is
// MessageTooLargeError, resource-limit-exceeded on a device's send is
// IotHubQuotaExceededError.
var conditions = map[iothub.Code]amqp.Condition{
	iothub.DeviceNotFound:                  amqp.ErrCondNotFound,
	iothub.DeviceMaximumQueueDepthExceeded: amqp.ErrCondResourceLimitExceeded,
	iothub.MessageTooLarge:                 amqp.ErrCondMessageSizeExceeded,
	iothub.ArgumentInvalid:                 "com.microsoft:argument-error",
	iothub.IotHubUnauthorizedAccess:        amqp.ErrCondUnauthorizedAccess,
	iothub.ThrottlingException:             "com.microsoft:device-container-throttled",
	// Every SDK retries a forced detach (Node: ServiceUnavailableError, C#
	// and Java: transient); the emulator's refusals of a device's
	// reconnects while a fault is in force answer with it.
	iothub.ServiceUnavailable:    amqp.ErrCondDetachForced,
	iothub.IotHubQuotaExceeded:   amqp.ErrCondResourceLimitExceeded,
	iothub.DeviceMessageLockLost: "com.microsoft:message-lock-lost",
}

// amqpError is the one mapping of an error to the AMQP error a rejected
// outcome or detach carries. The description is the hub's
// "ErrorCode:<Name>;<message>" form and the info carries a tracking id;
// anything that is not an iothub.Error is an internal error
// whose details stay in the log.
func amqpError(err error) *amqp.Error {
	code := iothub.CodeOf(err)
	cond, ok := conditions[code]
	if !ok {
		cond = amqp.ErrCondInternalError
	}
	return &amqp.Error{
		Condition:   cond,
		Description: "ErrorCode:" + code.Name() + ";" + iothub.MessageOf(err),
		Info:        amqp.Fields{"com.microsoft:tracking-id": uuid.NewString()},
	}
}
