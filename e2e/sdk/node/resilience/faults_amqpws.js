'use strict';
// The AMQP fault scenarios (scenarios.js) over AmqpWs.
require('./scenarios')('AmqpWs');
