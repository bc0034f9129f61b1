'use strict';
// The AMQP fault scenarios (scenarios.js) over Amqp.
require('./scenarios')('Amqp');
