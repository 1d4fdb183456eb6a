// Coverage of every test counts against all of src/ (tests mirror src/, but a walker test also exercises arch/).
export default () => ['src/**'];
