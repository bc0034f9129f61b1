package faults

import (
	"strconv"
	"strings"
	"time"

	"github.com/iothub-emulator/iothub-emulator/iothub"
)

// The application properties of a device-to-cloud message with which
// Microsoft's SDK test suites ask the hub for a fault.
const (
	PropOperationType  = "AzIoTHub_FaultOperationType"
	PropCloseReason    = "AzIoTHub_FaultOperationCloseReason"
	PropDelayInSecs    = "AzIoTHub_FaultOperationDelayInSecs"
	PropDurationInSecs = "AzIoTHub_FaultOperationDurationInSecs"
)

// The fault operation types those suites send.
const (
	OpKillTcp              = "KillTcp"
	OpShutDownMqtt         = "ShutDownMqtt"
	OpKillAmqpConnection   = "KillAmqpConnection"
	OpKillAmqpSession      = "KillAmqpSession"
	OpKillAmqpCBSLinkReq   = "KillAmqpCBSLinkReq"
	OpKillAmqpCBSLinkResp  = "KillAmqpCBSLinkResp"
	OpKillAmqpD2CLink      = "KillAmqpD2CLink"
	OpKillAmqpC2DLink      = "KillAmqpC2DLink"
	OpKillAmqpTwinLinkReq  = "KillAmqpTwinLinkReq"
	OpKillAmqpTwinLinkResp = "KillAmqpTwinLinkResp"
	OpKillAmqpMethodReq    = "KillAmqpMethodReqLink"
	OpKillAmqpMethodResp   = "KillAmqpMethodRespLink"
	OpShutDownAmqp         = "ShutDownAmqp"
	OpThrottling           = "InvokeThrottling"
	OpQuotaExceeded        = "InvokeMaxMessageQuota"
	OpAuthError            = "InvokeAuthError"
)

// FromMessage puts in force the fault a device's message asks for with the
// AzIoTHub_FaultOperation* properties, and reports whether it asked for one.
// The message itself is stored as any other (the hub routed it too).
//
//   - KillTcp, ShutDownMqtt, ShutDownAmqp and the KillAmqp… faults end
//     what they name (Connections.Drop) DelayInSecs after the message and
//     refuse the device's reconnects for DurationInSecs (none when absent).
//     Over MQTT, which has no server goodbye, sessions or links, each of
//     them closes the device's connection.
//   - InvokeThrottling, InvokeMaxMessageQuota and InvokeAuthError answer
//     the device's operations with 429001 ThrottlingException, 403002
//     IotHubQuotaExceeded or 401002 IotHubUnauthorizedAccess from
//     DelayInSecs on for DurationInSecs.
func (s *Service) FromMessage(deviceID, moduleID string, props map[string]string) (bool, error) {
	op, ok := props[PropOperationType]
	if !ok {
		return false, nil
	}
	delay, err := seconds(props, PropDelayInSecs)
	if err != nil {
		return true, err
	}
	duration, err := seconds(props, PropDurationInSecs)
	if err != nil {
		return true, err
	}
	f := Fault{DeviceID: deviceID, ModuleID: moduleID, Delay: delay, Duration: duration, Source: "message",
		Reason: strings.TrimSpace(props[PropCloseReason])}
	switch {
	case dropOperations[op]:
		f.Action, f.Operation = DropConnection, op
	case op == OpThrottling:
		f.Action, f.ErrorCode = Error, iothub.ThrottlingException
	case op == OpQuotaExceeded:
		f.Action, f.ErrorCode = Error, iothub.IotHubQuotaExceeded
	case op == OpAuthError:
		f.Action, f.ErrorCode = Error, iothub.IotHubUnauthorizedAccess
	default:
		return true, iothub.Errorf(iothub.ArgumentInvalid, "Unknown %s %q.", PropOperationType, op)
	}
	if f.Action == Error && f.Duration == 0 {
		f.Duration = DefaultMessageFaultDuration
	}
	_, err = s.Create(f)
	return true, err
}

// DefaultMessageFaultDuration is how long an Invoke… fault lasts without
// DurationInSecs (the C# suite's default).
const DefaultMessageFaultDuration = 5 * time.Second

func seconds(props map[string]string, name string) (time.Duration, error) {
	v, ok := props[name]
	if !ok || v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 0 || n > 24*3600 {
		return 0, iothub.Errorf(iothub.ArgumentInvalid, "%s must be a number of seconds, not %q.", name, v)
	}
	return time.Duration(n) * time.Second, nil
}
