# fails: delivers_the_welcome_email
# The welcome email goes to the shop's own address instead of the new user.
class NewUser(BaseModel):
    email: str = Field(max_length=254, pattern=EMAIL_PATTERN)
    name: str = Field(min_length=1, max_length=100)


welcome_app = FastAPI()


@welcome_app.post("/users", status_code=201)
def create_user(user: NewUser, background_tasks: BackgroundTasks) -> NewUser:
    # Send the welcome email (its subject greets user.name) without making the client wait for it.
    background_tasks.add_task(send_email, "shop@example.com", f"Welcome, {user.name}!", "New signup.")
    return user
